"""Shared API schema pieces: the base class every schema extends, and pagination."""

from collections.abc import Sequence
from typing import Annotated, Generic, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field


class Schema(BaseModel):
    """Reads ORM objects, and refuses fields it does not declare (422, not silently dropped)."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


T = TypeVar("T")


def not_null(value: T | None) -> T:
    """For PATCH fields that may be left out but not set to null (columns that are NOT NULL)."""
    if value is None:
        raise ValueError("may be omitted but not null")
    return value


MAX_PAGE_SIZE = 100


class Page(Schema, Generic[T]):
    """One page of a collection, with the total so clients can page through it."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(ge=0)

    @classmethod
    def of(cls, rows: Sequence[object], *, total: int, params: "PageParams") -> Self:
        """The page for these ORM rows; each is read into `T` through its attributes."""
        return cls.model_validate(
            {"items": rows, "total": total, "limit": params.limit, "offset": params.offset}
        )


class PageParams(BaseModel):
    """`?limit=&offset=`; anything out of range is a 422, never a silent clamp."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)


PageQuery = Annotated[PageParams, Query()]

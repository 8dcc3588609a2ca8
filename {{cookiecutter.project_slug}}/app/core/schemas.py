"""Shared API schema pieces: the base class every schema extends, and pagination."""

from collections.abc import Sequence
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema


class Schema(BaseModel):
    """Reads ORM objects, and refuses fields it does not declare (422, not silently dropped)."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")


T = TypeVar("T")


def _reject_null(value: object) -> object:
    if value is None:
        raise ValueError("may be omitted but not null")
    return value


class NotNull:
    """Marks a PATCH field that may be left out but never set to null (a NOT NULL column).

    `Annotated[Title | None, NotNull] = None`: an explicit null is a 422, and the OpenAPI
    schema shows the field as not nullable, so generated clients agree with the server.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_reject_null, handler(source))

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        options = [option for option in json_schema.get("anyOf", []) if option != {"type": "null"}]
        if len(options) == 1:
            del json_schema["anyOf"]
            json_schema.update(options[0])
        return json_schema


MAX_PAGE_SIZE = 100


class PageParams(BaseModel):
    """`?limit=&offset=`; anything out of range is a 422, never a silent clamp."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class Page(Schema, Generic[T]):
    """One page of a collection, with the total so clients can page through it."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(ge=0)

    @classmethod
    def of(cls, rows: Sequence[object], *, total: int, params: PageParams) -> Self:
        """The page for these ORM rows; each is read into `T` through its attributes."""
        return cls.model_validate(
            {"items": rows, "total": total, "limit": params.limit, "offset": params.offset}
        )


PageQuery = Annotated[PageParams, Query()]

"""Shared API schema pieces: the base class every schema extends, text rules, and pagination."""

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, PydanticKnownError, core_schema

# --- Text ----------------------------------------------------------------------------------------
# What no string may hold, on either database: NUL (PostgreSQL cannot store it in text, and
# SQLite's driver refuses it in a statement) and lone surrogates (they have no UTF-8 encoding).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# Control characters: C0, DEL and C1. A single line holds none of them; a multi-line text may
# hold tab, line feed and carriage return.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_LINE_BREAKS_AND_TABS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
FORBIDDEN_CHARACTER = "forbidden_character"


def _refuse_unstorable(value: object) -> None:
    """Refuses NUL and lone surrogates anywhere in a value: a string, or a list or dict of them."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise PydanticCustomError(
                FORBIDDEN_CHARACTER, "Text may not contain NUL or unpaired surrogate characters"
            )
    elif isinstance(value, list | tuple | set | frozenset):
        for element in value:
            _refuse_unstorable(element)
    elif isinstance(value, dict):
        for key, element in value.items():
            _refuse_unstorable(key)
            _refuse_unstorable(element)


def _single_line(value: str) -> str:
    if _CONTROL.search(value):
        raise PydanticCustomError(
            FORBIDDEN_CHARACTER, "A single line may not contain control characters"
        )
    return value


def _multi_line(value: str) -> str:
    if _CONTROL_BUT_LINE_BREAKS_AND_TABS.search(value):
        raise PydanticCustomError(
            FORBIDDEN_CHARACTER,
            "Text may not contain control characters other than tab, line feed and carriage return",
        )
    return value


# `Annotated[str, StringConstraints(...), SingleLine]`: a name, a title, an email address.
SingleLine = AfterValidator(_single_line)
# `Annotated[str, StringConstraints(...), MultiLine]`: a description, a comment.
MultiLine = AfterValidator(_multi_line)


class StorableInput(BaseModel):
    """Refuses NUL and lone surrogates in every field, before any other check runs.

    So no string a client sends can fail in the database driver instead of with a 422, whatever
    type a field has and whether or not it is marked `SingleLine` or `MultiLine`.
    """

    @field_validator("*", mode="before")
    @classmethod
    def _storable(cls, value: object) -> object:
        _refuse_unstorable(value)
        return value


# Unknown members an object may have before it is refused whole, with one error instead of one
# per member: 65,536 unknown keys would otherwise cost seconds of validation and error building.
MAX_UNKNOWN_MEMBERS = 20


class ReadSchema(BaseModel):
    """What the API answers: read from ORM objects (`from_attributes`), with exactly its fields.

    Apart from `Schema` because what it reads comes from the database, not from a client: it
    skips the input checks, which would otherwise run on every field of every response.
    """

    model_config = ConfigDict(from_attributes=True, extra="forbid")


class Schema(StorableInput):
    """What a client sends: refuses fields it does not declare (422, not silently dropped),
    NUL and lone surrogates, and objects with many unknown members."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _few_unknown_members(cls, data: object) -> object:
        if isinstance(data, dict) and len(data) > len(cls.model_fields) + MAX_UNKNOWN_MEMBERS:
            raise PydanticCustomError(
                "too_many_members",
                "The object has {count} members; this one takes at most {fields}",
                {"count": len(data), "fields": len(cls.model_fields)},
            )
        return data


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


class TextLimit:
    """Bounds the string a client may send for a value that is not text: a date, a time, a
    decimal. `Annotated[date, TextLimit(10)]`: a longer string is a 422 before it is parsed,
    and the OpenAPI schema gives the string form its `maxLength`, like every other string."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def _check(self, value: object) -> object:
        if isinstance(value, str) and len(value) > self.max_length:
            raise PydanticKnownError("string_too_long", {"max_length": self.max_length})
        return value

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        forms = json_schema.get("anyOf", [json_schema])
        for form in forms:
            if form.get("type") == "string":
                form["maxLength"] = self.max_length
        return json_schema


def to_places(places: int) -> AfterValidator:
    """`Annotated[Decimal, Field(decimal_places=2), to_places(2)]`: the value with exactly that
    many decimals (1.5 becomes 1.50), as a NUMERIC column stores and gives it back, so the
    answer to a write is the representation a later read gives."""
    exponent = Decimal(1).scaleb(-places)

    def quantize(value: Decimal) -> Decimal:
        return value.quantize(exponent)

    return AfterValidator(quantize)


def in_utc(value: datetime) -> datetime:
    """An aware datetime moved to UTC, as the database gives it back (app/db/base.py)."""
    return value.astimezone(UTC)


MAX_PAGE_SIZE = 100


class PageParams(StorableInput):
    """`?limit=&offset=`; anything out of range is a 422, never a silent clamp."""

    limit: int = Field(default=20, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class Page(ReadSchema, Generic[T]):
    """One page of a collection, with the total so clients can page through it."""

    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(ge=0)

    @classmethod
    def of(cls, rows: Sequence[object], *, total: int, params: PageParams) -> Self:
        """The page for these rows (ORM objects or result rows), each read into `T` through its
        attributes."""
        return cls.model_validate(
            {"items": rows, "total": total, "limit": params.limit, "offset": params.offset}
        )


PageQuery = Annotated[PageParams, Query()]

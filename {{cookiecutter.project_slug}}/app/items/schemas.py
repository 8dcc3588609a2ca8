import uuid
from datetime import datetime
from typing import Annotated

from pydantic import StringConstraints

from app.core.schemas import MultiLine, NotNull, ReadSchema, Schema, SingleLine
from app.items.models import DESCRIPTION_MAX_LENGTH, TITLE_MAX_LENGTH

Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX_LENGTH),
    SingleLine,
]
Description = Annotated[str, StringConstraints(max_length=DESCRIPTION_MAX_LENGTH), MultiLine]


class ItemCreate(Schema):
    title: Title
    description: Description | None = None


class ItemUpdate(Schema):
    """Every field optional; only the fields sent are changed."""

    title: Annotated[Title | None, NotNull] = None
    description: Description | None = None


class ItemRead(ReadSchema):
    id: uuid.UUID
    owner_id: uuid.UUID
    title: str
    description: str | None
    created_at: datetime
    updated_at: datetime

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from app.core.schemas import Schema, not_null
from app.users.models import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH, Role

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


def _lower(email: str) -> str:
    return email.lower()


Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH), AfterValidator(_lower)]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
]
FullName = Annotated[str, StringConstraints(min_length=1, max_length=FULL_NAME_MAX_LENGTH)]


class UserCreate(Schema):
    email: Email
    password: Password
    full_name: FullName | None = None


class UserRead(Schema):
    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    created_at: datetime


class UserUpdateMe(Schema):
    """What a user may change about themself. A new password needs the current one."""

    full_name: FullName | None = None
    password: Password | None = None
    current_password: Annotated[str, StringConstraints(max_length=PASSWORD_MAX_LENGTH)] | None = (
        None
    )

    _password_not_null = field_validator("password", "current_password")(not_null)

    @model_validator(mode="after")
    def _current_password_with_new(self) -> Self:
        if self.password is not None and self.current_password is None:
            raise ValueError("current_password is required to set a new password")
        return self


class UserUpdateAdmin(Schema):
    """What an admin may change about any user."""

    full_name: FullName | None = None
    role: Role | None = None
    is_active: bool | None = None

    _not_null = field_validator("role", "is_active")(not_null)

import uuid
from datetime import datetime
from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StringConstraints,
    model_validator,
)

from app.core.schemas import NotNull, ReadSchema, Schema, SingleLine
from app.users.models import EMAIL_MAX_LENGTH, FULL_NAME_MAX_LENGTH, Role

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128  # characters
PASSWORD_MAX_BYTES = 256  # in UTF-8: 128 characters of most scripts, 64 emoji


def _lower(email: str) -> str:
    return email.lower()


def _check_password_bytes(password: str) -> str:
    """Bounds what reaches the hasher in bytes, not only characters (one can be 4 bytes)."""
    # (A lone surrogate, which JSON allows, never gets here: pydantic refuses it as a string.)
    if len(password.encode()) > PASSWORD_MAX_BYTES:
        raise ValueError(f"must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8")
    return password


PasswordBytes = AfterValidator(_check_password_bytes)


Email = Annotated[EmailStr, Field(max_length=EMAIL_MAX_LENGTH), SingleLine, AfterValidator(_lower)]
Password = Annotated[
    str,
    StringConstraints(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH),
    PasswordBytes,
]
FullName = Annotated[
    str, StringConstraints(min_length=1, max_length=FULL_NAME_MAX_LENGTH), SingleLine
]


class UserCreate(Schema):
    email: Email
    password: Password
    full_name: FullName | None = None


class UserRead(ReadSchema):
    id: uuid.UUID
    email: str
    full_name: str | None
    role: Role
    is_active: bool
    # Set once the owner followed the verification email (POST /auth/verify-email).
    email_verified_at: datetime | None
    created_at: datetime


class UserUpdateMe(Schema):
    """What a user may change about themself. A new password needs the current one."""

    model_config = ConfigDict(
        json_schema_extra={"dependentRequired": {"password": ["current_password"]}}
    )

    full_name: FullName | None = None
    password: Annotated[Password | None, NotNull] = None
    current_password: Annotated[
        Annotated[str, StringConstraints(max_length=PASSWORD_MAX_LENGTH), PasswordBytes] | None,
        NotNull,
    ] = None

    @model_validator(mode="after")
    def _current_password_with_new(self) -> Self:
        if self.password is not None and self.current_password is None:
            raise ValueError("current_password is required to set a new password")
        return self


class UserUpdateAdmin(Schema):
    """What an admin may change about any user."""

    full_name: FullName | None = None
    role: Annotated[Role | None, NotNull] = None
    # Strict: `0` or `"false"` is a 422, not silently read as False.
    is_active: Annotated[StrictBool | None, NotNull] = None

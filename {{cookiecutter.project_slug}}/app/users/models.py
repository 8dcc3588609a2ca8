import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from sqlalchemy import Enum, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Timestamps, UUIDPrimaryKey

EMAIL_MAX_LENGTH = 254
FULL_NAME_MAX_LENGTH = 100


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    # Unique whatever its case: the database enforces it with a unique index on lower(email)
    # (see __table_args__), so no code path and no race can store two spellings of one address.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(FULL_NAME_MAX_LENGTH))
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]),
        default=Role.USER,
    )
    is_active: Mapped[bool] = mapped_column(default=True)
    # Bumped on a password change or deactivation: every token issued before stops working.
    token_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # When the owner proved they receive mail at `email` (POST /auth/verify-email); None: not yet.
    email_verified_at: Mapped[datetime | None]

    __table_args__ = (Index("uq_users_email_lower", func.lower(email), unique=True),)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class Caller(Protocol):
    """What authorization needs to know of whoever makes a request: a `Principal` (what every
    protected request checks, see app/auth/dependencies.py) or a whole `User`."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a protected request: the token's user, found active and with the token's
    version by one small query of that request (`get_principal` in app/users/service.py)."""

    id: uuid.UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Enum, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey, utcnow
from app.users.models import EMAIL_MAX_LENGTH


class RefreshToken(UUIDPrimaryKey, Base):
    """One issued refresh token. Every rotation adds a row to the same family (one login)."""

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    # When the login that started the family happened: no rotation extends it past
    # REFRESH_TOKEN_FAMILY_MAX_DAYS from then.
    family_issued_at: Mapped[datetime]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The user's token_version when issued; a later bump invalidates the token.
    token_version: Mapped[int]
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Set when the token is rotated, logged out or its family is revoked.
    revoked_at: Mapped[datetime | None]


class AccountTokenPurpose(StrEnum):
    PASSWORD_RESET = "password_reset"
    EMAIL_VERIFICATION = "email_verification"


class AccountToken(UUIDPrimaryKey, Base):
    """A single-use token mailed to an account's address: a password reset or an email
    verification. Only its digest is stored; the token itself exists in the email alone.

    The id is the id of the job that mailed it (app/auth/jobs.py): a retried job replaces its
    own token instead of adding a second one."""

    __tablename__ = "account_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[AccountTokenPurpose] = mapped_column(
        Enum(
            AccountTokenPurpose,
            native_enum=False,
            length=32,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    # The address it was mailed to: a token stops working if the account's email changes.
    email: Mapped[str] = mapped_column(String(EMAIL_MAX_LENGTH))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    # Set when the token is used, or when a newer use of the same purpose spends it.
    used_at: Mapped[datetime | None]

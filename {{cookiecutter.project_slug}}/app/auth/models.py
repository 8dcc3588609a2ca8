import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UUIDPrimaryKey, utcnow


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

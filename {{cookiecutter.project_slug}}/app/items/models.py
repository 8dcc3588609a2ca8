import uuid

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, Timestamps, UUIDPrimaryKey

TITLE_MAX_LENGTH = 200
DESCRIPTION_MAX_LENGTH = 5000


class Item(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "items"

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX_LENGTH))
    description: Mapped[str | None] = mapped_column(Text)

    # The list's order, newest first (read backwards), per owner: a page is read in index order,
    # never sorted (migration 3c8d5e1f9a27). It serves every lookup by owner_id too.
    __table_args__ = (Index("ix_items_owner_id_created_at_id", "owner_id", "created_at", "id"),)

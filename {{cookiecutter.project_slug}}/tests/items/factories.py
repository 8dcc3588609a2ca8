"""Typed factories of the example resource (tests/factories.py makes the users)."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.items import service as items_service
from app.items.models import Item
from app.items.schemas import ItemCreate
from app.users.models import User


async def create_item(
    session: AsyncSession,
    *,
    owner: User,
    title: str | None = None,
    description: str | None = None,
) -> Item:
    return await items_service.create_item(
        session,
        owner=owner,
        data=ItemCreate(title=title or f"item {uuid.uuid4().hex[:8]}", description=description),
    )

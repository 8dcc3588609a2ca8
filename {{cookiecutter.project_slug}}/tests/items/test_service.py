import uuid
from datetime import datetime

import pytest
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.items import service
from app.items.exceptions import ItemNotFound
from app.items.models import Item
from app.items.schemas import ItemCreate, ItemUpdate
from app.users.models import User
from tests.factories import create_user
from tests.items.factories import create_item


async def _get(session: AsyncSession, viewer: User, item_id: uuid.UUID) -> Item:
    return await service.get_item_for_account(
        session, user_id=viewer.id, token_version=viewer.token_version, item_id=item_id
    )


async def test_create_item_sets_the_owner(session: AsyncSession, user: User) -> None:
    item = await service.create_item(session, owner=user, data=ItemCreate(title="t"))
    assert item.owner_id == user.id
    assert item.created_at.tzinfo is not None


async def test_get_item_hides_other_owners(session: AsyncSession, user: User) -> None:
    stranger = await create_user(session)
    item = await create_item(session, owner=stranger)
    with pytest.raises(ItemNotFound):
        await _get(session, user, item.id)


async def test_admin_sees_every_item(session: AsyncSession, user: User, admin: User) -> None:
    item = await create_item(session, owner=user)
    found = await _get(session, admin, item.id)
    assert found.id == item.id
    items, total = await service.list_items(session, viewer=admin, limit=10, offset=0)
    assert total == 1
    assert [entry.id for entry in items] == [item.id]


async def test_update_item_applies_only_set_fields(session: AsyncSession, user: User) -> None:
    item = await create_item(session, owner=user, title="a", description="d")
    await service.update_item(session, item=item, data=ItemUpdate(title="b"))
    assert (item.title, item.description) == ("b", "d")
    assert item.updated_at >= item.created_at


async def test_deleting_the_owner_deletes_their_items(session: AsyncSession, user: User) -> None:
    item = await create_item(session, owner=user)
    await session.delete(user)
    await session.flush()
    session.expunge(item)
    admin = await create_user(session)
    admin.role = admin.role.ADMIN
    with pytest.raises(ItemNotFound):
        await _get(session, admin, item.id)


async def test_naive_datetimes_are_refused(session: AsyncSession, user: User) -> None:
    """Every timestamp is stored as UTC; a naive one is a bug, caught before it is written."""
    item = await create_item(session, owner=user)
    item.updated_at = datetime(2026, 1, 1)
    with pytest.raises(StatementError, match="naive datetime"):
        await session.flush()

import uuid
from datetime import datetime

import pytest
from sqlalchemy.exc import StatementError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.exceptions import InvalidToken
from app.items import service
from app.items.exceptions import ItemNotFound
from app.items.models import Item
from app.items.schemas import ItemCreate, ItemRead, ItemUpdate
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


async def _read(session: AsyncSession, viewer: User, item_id: uuid.UUID) -> ItemRead:
    return await service.read_item_for_account(
        session, user_id=viewer.id, token_version=viewer.token_version, item_id=item_id
    )


async def test_the_read_row_answers_as_the_loaded_item(
    session: AsyncSession, user: User, admin: User
) -> None:
    """`read_item_for_account` (the GET's Core read) gives what `get_item_for_account` gives,
    the timestamps still aware, and refuses and hides exactly as it does."""
    item = await create_item(session, owner=user, title="a", description="d")
    loaded = ItemRead.model_validate(await _get(session, user, item.id))
    read = await _read(session, user, item.id)
    assert read == loaded
    assert read.created_at.tzinfo is not None
    assert await _read(session, admin, item.id) == loaded
    stranger = await create_user(session)
    with pytest.raises(ItemNotFound):
        await _read(session, stranger, item.id)
    with pytest.raises(ItemNotFound):
        await _read(session, user, uuid.uuid4())
    user.token_version += 1
    await session.flush()
    with pytest.raises(InvalidToken):
        await service.read_item_for_account(
            session, user_id=user.id, token_version=user.token_version - 1, item_id=item.id
        )


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

"""An item created for a user that another connection deleted meanwhile: a 401, not a 500
(tests/test_deleted_user.py does the same for logins and refreshes)."""

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.exceptions import InvalidToken
from app.core.config import get_settings
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.items import service as items_service
from app.items.schemas import ItemCreate
from tests.databases import alembic_config
from tests.test_deleted_user import committed_user, read_then_lose


@pytest.fixture
def committed_database(empty_database: str) -> str:
    command.upgrade(alembic_config(empty_database), "head")
    return empty_database


@pytest.fixture
async def factory(committed_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions that commit for real, on a migrated database of the test's own."""
    engine = create_engine(get_settings(), url=committed_database)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def test_item_of_a_user_deleted_meanwhile_is_a_401(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    user = await committed_user(factory)
    async with factory() as session:
        read = await read_then_lose(session, factory, user)
        with pytest.raises(InvalidToken) as caught:
            await items_service.create_item(session, owner=read, data=ItemCreate(title="orphan"))
    assert caught.value.status_code == 401

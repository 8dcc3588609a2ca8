"""A user deleted by another connection between a request's read of it and its insert of a row
that refers to it: the foreign key refuses the insert, and the request gets a 401, not a 500.

Each test commits for real on a migrated database of its own, with foreign keys enforced on
every backend (SQLite too: the app's engine turns them on).
"""

from collections.abc import AsyncIterator

import pytest
from alembic import command
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.exceptions import InvalidCredentials
from app.auth.models import RefreshToken
from app.core.config import get_settings
from app.core.security import Tokens
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.users.models import User
from tests import databases, factories
from tests.databases import alembic_config

TOKENS = Tokens(get_settings())


@pytest.fixture
def committed_database(empty_database: str) -> str:
    command.upgrade(alembic_config(empty_database), "head")
    return empty_database


@pytest.fixture
async def factory(committed_database: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(get_settings(), url=committed_database)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def committed_user(factory: async_sessionmaker[AsyncSession]) -> User:
    async with factory() as session, session.begin():
        return await factories.create_user(session)


async def _delete_elsewhere(factory: async_sessionmaker[AsyncSession], user: User) -> None:
    """Delete the user on another connection, committed."""
    async with factory() as other, other.begin():
        await other.execute(delete(User).where(User.id == user.id))


async def read_then_lose(
    session: AsyncSession, factory: async_sessionmaker[AsyncSession], user: User
) -> User:
    """The request reads its user; then another connection deletes it."""
    read = await session.get(User, user.id)
    assert read is not None
    if databases.ONE_WRITER_AT_A_TIME:
        # Within one request nothing can delete in between (SQLite: BEGIN IMMEDIATE); the test
        # ends the read's transaction to let the delete in.
        await session.commit()
    await _delete_elsewhere(factory, user)
    return read


async def test_login_of_a_user_deleted_meanwhile_is_a_401(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    user = await committed_user(factory)
    async with factory() as session:
        read = await read_then_lose(session, factory, user)
        with pytest.raises(InvalidCredentials) as caught:
            await auth_service.issue_tokens(session, tokens=TOKENS, user=read)
    assert caught.value.status_code == 401


async def test_refresh_of_a_user_deleted_meanwhile_is_a_401(
    factory: async_sessionmaker[AsyncSession],
) -> None:
    """The insert of the next token of a login (what a refresh does after its checks)."""
    user = await committed_user(factory)
    async with factory() as session, session.begin():
        await auth_service.issue_tokens(session, tokens=TOKENS, user=user)
    async with factory() as session:
        family = await session.scalar(select(RefreshToken).where(RefreshToken.user_id == user.id))
        assert family is not None
        read = await read_then_lose(session, factory, user)
        with pytest.raises(InvalidCredentials) as caught:
            await auth_service.issue_tokens(session, tokens=TOKENS, user=read, family=family)
    assert caught.value.status_code == 401

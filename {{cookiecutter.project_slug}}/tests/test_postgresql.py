"""What only a PostgreSQL project does: statement and lock timeouts, a bounded pool, and a
server that cannot be reached."""

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app import cli
from app.core.config import get_settings
from app.core.errors import is_database_unavailable
from app.db.engine import create_engine
from app.db.session import create_sessionmaker, get_sessionmaker
from tests import databases
from tests.databases import alembic_config


def _timeouts(dbapi_connection: Any) -> tuple[str, str]:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')"
        )
        statement_timeout, lock_timeout = cursor.fetchone()
        return statement_timeout, lock_timeout
    finally:
        cursor.close()


def test_migrations_run_without_the_apps_statement_timeout(empty_database: str) -> None:
    """An index build may take longer than any request should: migrations connect with no
    statement timeout, and a lock timeout of their own; the app keeps its statement timeout."""
    seen: list[tuple[str, str]] = []

    def probe(dbapi_connection: Any, _record: Any) -> None:
        seen.append(_timeouts(dbapi_connection))

    # Every connection any engine opens, so the one env.py opens for the migrations too.
    sa.event.listen(sa.pool.Pool, "connect", probe)
    try:
        command.upgrade(alembic_config(empty_database), "head")
    finally:
        sa.event.remove(sa.pool.Pool, "connect", probe)
    settings = get_settings()
    lock_timeout = f"{settings.MIGRATION_LOCK_TIMEOUT_MS // 1000}s"
    assert seen
    assert set(seen) == {("0", lock_timeout)}

    async def app_statement_timeout() -> Any:
        engine = create_engine(settings, url=empty_database)
        try:
            async with engine.connect() as connection:
                return await connection.scalar(sa.text("SHOW statement_timeout"))
        finally:
            await engine.dispose()

    expected = f"{settings.DATABASE_STATEMENT_TIMEOUT_MS // 1000}s"
    assert asyncio.run(app_statement_timeout()) == expected


async def test_a_statement_over_the_timeout_is_an_outage(session: AsyncSession) -> None:
    await session.execute(text("SET LOCAL statement_timeout = 20"))
    with pytest.raises(DBAPIError) as caught:
        await session.execute(text("SELECT pg_sleep(2)"))
    assert is_database_unavailable(caught.value)


async def test_an_exhausted_pool_answers_503_not_500(
    app: FastAPI, client: AsyncClient, user_headers: dict[str, str], migrated_database: str
) -> None:
    """Every connection busy for longer than DATABASE_POOL_TIMEOUT: the request gets a 503."""
    engine = create_async_engine(migrated_database, pool_size=1, max_overflow=0, pool_timeout=0.1)
    starved = create_sessionmaker(engine)

    async def starved_sessionmaker() -> async_sessionmaker[AsyncSession]:
        return starved

    app.dependency_overrides[get_sessionmaker] = starved_sessionmaker
    try:
        async with engine.connect():  # holds the only connection
            response = await client.get("/api/v1/users/me", headers=user_headers)
        assert response.status_code == 503
        assert response.json()["code"] == "database_unavailable"
    finally:
        await engine.dispose()


def test_create_admin_explains_an_unreachable_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", databases.unreachable_database_url())
    monkeypatch.setenv("ADMIN_PASSWORD", "a long admin password")
    get_settings.cache_clear()
    try:
        with pytest.raises(SystemExit) as exited:
            cli.main(["root@example.com"])
    finally:
        get_settings.cache_clear()
    assert "cannot reach the database" in str(exited.value.code)

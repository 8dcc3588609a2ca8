"""Throw-away databases for the tests, on the database this service was generated for, and
what the tests need to know about that database.

Each run (and each pytest-xdist worker) gets databases of its own on the server named by
TEST_DATABASE_URL (default: the local PostgreSQL), created empty and dropped afterwards. Where
no server answers, the tests that need one skip with one reason.
"""

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import cache
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from app.core.project import PROJECT_SLUG
from tests import PROJECT_DIR
from tests.outage import Outage

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# Unique per run and per pytest-xdist worker, and recognisable: test_<slug>_<worker>_<pid>_...
_PREFIX = f"test_{PROJECT_SLUG[:20]}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"

# Whether the database runs one writing transaction at a time. PostgreSQL runs them side by
# side and takes row locks, so a request can lose a race after its own checks passed.
ONE_WRITER_AT_A_TIME = False

# Settings of this database that the settings refuse, and the one they must name
# (tests/core/test_config.py).
BAD_SETTINGS: list[tuple[dict[str, Any], str]] = [
    ({"DATABASE_POOL_SIZE": 0}, "DATABASE_POOL_SIZE"),
    ({"DATABASE_MAX_OVERFLOW": -1}, "DATABASE_MAX_OVERFLOW"),
    ({"DATABASE_POOL_TIMEOUT": "forever"}, "DATABASE_POOL_TIMEOUT"),
    ({"DATABASE_STATEMENT_TIMEOUT_MS": -5}, "DATABASE_STATEMENT_TIMEOUT_MS"),
    ({"DATABASE_CONNECT_TIMEOUT": 0}, "DATABASE_CONNECT_TIMEOUT"),
]
# URLs that DATABASE_URL refuses, and what its message says about each.
REFUSED_URLS = [
    ("postgresql://postgres@localhost/app", "uses 'postgresql'"),
    ("sqlite+aiosqlite:///./app.db", "uses 'sqlite+aiosqlite'"),
    ("postgresql+asyncpg://postgres@localhost", "names no database"),
]


async def _admin(sql: str) -> None:
    """One statement on the server's maintenance database, outside a transaction (CREATE
    DATABASE cannot run inside one)."""
    engine = create_async_engine(SERVER_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


@cache
def unavailable_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None when the server answers."""
    try:
        asyncio.run(asyncio.wait_for(_admin("SELECT 1"), timeout=5))
    except Exception as exc:
        where = make_url(SERVER_URL).render_as_string(hide_password=True)
        return (
            f"PostgreSQL is not reachable at {where} ({type(exc).__name__}: {exc}); "
            "start it, or point TEST_DATABASE_URL at a server the tests may create databases on"
        )
    return None


def new_database_url(label: str) -> str:
    """The URL of a database that does not exist yet (a name well under PostgreSQL's 63 bytes)."""
    name = f"{_PREFIX}_{label[:12]}_{uuid.uuid4().hex[:8]}"
    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


def unreachable_database_url() -> str:
    """A URL where no server listens: a loopback port that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return (
        make_url(SERVER_URL)
        .set(host="127.0.0.1", port=port, database="gone")
        .render_as_string(hide_password=False)
    )


def create_database(url: str) -> None:
    asyncio.run(_admin(f'CREATE DATABASE "{make_url(url).database}"'))


def drop_database(url: str) -> None:
    # WITH (FORCE) also ends connections a failed test left open (PostgreSQL 13 and later).
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for `database_url`, without touching the app's logging."""
    config = Config(str(PROJECT_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_DIR / "migrations"))
    config.set_main_option("sqlalchemy.url", database_url)
    config.attributes["configure_logger"] = False
    return config


@contextmanager
def scratch_database(url: str, *, migrated: bool = False) -> Iterator[str]:
    """Create the database at `url` (built by `alembic upgrade head` when `migrated`), yield
    its URL, and drop it afterwards. Skips the test where the database cannot be reached."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    create_database(url)
    try:
        if migrated:
            command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        drop_database(url)


async def _open_transactions(url: str) -> int:
    """Connections to the database, other than this one, inside a transaction right now."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
                )
            )
            return int(count or 0)
    finally:
        await engine.dispose()


def no_transaction_open(url: str) -> bool:
    """Run in a thread with no event loop (the hashing thread): is any transaction open?"""
    return asyncio.run(_open_transactions(url)) == 0


async def driver_in_transaction(session: AsyncSession) -> bool:
    """What the database driver itself says: is this session's connection in a transaction?"""
    raw = await (await session.connection()).get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    return bool(driver.is_in_transaction())


@asynccontextmanager
async def writer_holding_a_lock(url: str) -> AsyncIterator[None]:
    """Another client in a transaction that locks the users table against every writer."""
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection, connection.begin():
            await connection.execute(text("LOCK TABLE users IN EXCLUSIVE MODE"))
            yield
    finally:
        await engine.dispose()


@contextmanager
def unreached_database(migrated_database: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """A DATABASE_URL the server cannot reach yet, and what makes it reachable.

    The migrated database, through a loopback port where nothing listens until `reach()`
    starts a proxy to the real server there.
    """
    real = make_url(migrated_database)
    proxy = Outage(real.host or "127.0.0.1", real.port or 5432)
    try:
        yield real.set(host="127.0.0.1", port=proxy.port).render_as_string(False), proxy.restore
    finally:
        proxy.close()


# The app's pool as the metrics tests set it (tests/core/test_metrics.py): a pool of 2 that may
# open 1 more in a burst; and as a served app's (tests/test_serve_metrics.py).
METRICS_POOL_SETTINGS: dict[str, Any] = {"DATABASE_POOL_SIZE": 2, "DATABASE_MAX_OVERFLOW": 1}
METRICS_POOL_SIZE = 2
SERVED_POOL_SIZE = 3
SERVED_POOL_ENV = {"DATABASE_POOL_SIZE": str(SERVED_POOL_SIZE)}

"""Throw-away databases for the tests, on the database this service was generated for, and
what the tests need to know about that database.

SQLite databases are files in a temporary folder, removed afterwards.
"""

import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from tests import PROJECT_DIR

# Whether the database runs one writing transaction at a time. SQLite does: every transaction
# that may write takes the write lock at its BEGIN (BEGIN IMMEDIATE, app/db/engine.py).
ONE_WRITER_AT_A_TIME = True

# Settings of this database that the settings refuse, and the one they must name
# (tests/core/test_config.py): SQLite has none but DATABASE_URL.
BAD_SETTINGS: list[tuple[dict[str, Any], str]] = []
# URLs that DATABASE_URL refuses, and what its message says about each.
REFUSED_URLS = [
    ("postgresql+asyncpg://postgres@localhost/app", "uses 'postgresql+asyncpg'"),
    ("sqlite+aiosqlite://", "names no database"),
    ("sqlite+aiosqlite:///:memory:", "names no database"),
]


def unavailable_reason() -> str | None:
    """SQLite is embedded: it is always there."""
    return None


def new_database_url(label: str) -> str:
    """The URL of a database file that does not exist yet, in a folder of its own."""
    folder = Path(tempfile.gettempdir()) / f"test-{label}-{uuid.uuid4().hex[:12]}"
    return f"sqlite+aiosqlite:///{folder / f'{label}.db'}"


def unreachable_database_url() -> str:
    """A database file in a folder that does not exist: every connection attempt fails."""
    return f"sqlite+aiosqlite:///{Path(tempfile.gettempdir()) / uuid.uuid4().hex / 'gone.db'}"


def create_database(url: str) -> None:
    """SQLite creates the file on first connect; its folder must exist."""
    Path(str(make_url(url).database)).parent.mkdir(parents=True)


def drop_database(url: str) -> None:
    shutil.rmtree(Path(str(make_url(url).database)).parent, ignore_errors=True)


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


def no_transaction_open(url: str) -> bool:
    """Run in the hashing thread: can another connection take the write lock at once?

    Every transaction of a request that may write holds SQLite's write lock from its BEGIN.
    """
    connection = sqlite3.connect(make_url(url).database or "", timeout=0, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:  # database is locked
        return False
    finally:
        connection.close()


async def driver_in_transaction(session: AsyncSession) -> bool:
    """What the database driver itself says: is this session's connection in a transaction?"""
    raw = await (await session.connection()).get_raw_connection()
    driver = raw.driver_connection
    return bool(getattr(driver, "in_transaction"))  # noqa: B009 - aiosqlite's, typed loosely


@asynccontextmanager
async def writer_holding_a_lock(url: str) -> AsyncIterator[None]:
    """Another client in a transaction that holds SQLite's write lock."""
    connection = sqlite3.connect(make_url(url).database or "", isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


@contextmanager
def unreached_database(migrated_database: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """A DATABASE_URL the server cannot reach yet, and what makes it reachable.

    A file in a folder that does not exist, so SQLite cannot open it; `reach()` creates the
    folder and SQLite creates the file on the next connection. (The migrated database is not
    needed: an empty file answers the readiness probe.)
    """
    url = new_database_url("unreached")
    try:
        yield url, lambda: create_database(url)
    finally:
        drop_database(url)


# The app's pool as the metrics tests find it: SQLite's keeps SQLAlchemy's defaults, 5
# connections (each a thread) and 10 more in a burst, in the tests and when served.
METRICS_POOL_SETTINGS: dict[str, Any] = {}
METRICS_POOL_SIZE = 5
SERVED_POOL_SIZE = 5
SERVED_POOL_ENV: dict[str, str] = {}

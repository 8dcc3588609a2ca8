"""Throw-away databases for the tests, on the database this service was generated for.
{%- if cookiecutter.database == "postgresql" %}

Each run (and each pytest-xdist worker) gets databases of its own on the server named by
TEST_DATABASE_URL (default: the local PostgreSQL), created empty and dropped afterwards. Where
no server answers, the tests that need one skip with one reason.
{%- else %}

SQLite databases are files in a temporary folder, removed afterwards.
{%- endif %}
"""

{% if cookiecutter.database == "postgresql" -%}
import asyncio
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import NullPool, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import PROJECT_SLUG
from tests import PROJECT_DIR

SERVER_URL = os.environ.get(
    "TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
# Unique per run and per pytest-xdist worker, and recognisable: test_<slug>_<worker>_<pid>_...
_PREFIX = f"test_{PROJECT_SLUG[:20]}_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}_{os.getpid()}"


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
{%- else -%}
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from tests import PROJECT_DIR


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
{%- endif %}


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

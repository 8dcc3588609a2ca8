"""What only a SQLite project does: no ROLLBACK where no transaction is open, and the
database file in the working directory."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection

from app.core.config import Settings
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.users.models import User
from tests import PROJECT_DIR, databases


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with databases.scratch_database(databases.new_database_url("sqlite"), migrated=True) as url:
        yield url


async def test_only_a_connection_with_a_transaction_is_rolled_back(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read's connection goes back to the pool without a ROLLBACK (each one a round trip to
    aiosqlite's thread); a write that is abandoned is still rolled back."""
    rollbacks = 0
    roll_back = AsyncAdapt_aiosqlite_connection.rollback

    def counted(self: AsyncAdapt_aiosqlite_connection) -> None:
        nonlocal rollbacks
        rollbacks += 1
        roll_back(self)

    monkeypatch.setattr(AsyncAdapt_aiosqlite_connection, "rollback", counted)
    engine = create_engine(Settings(DATABASE_URL=database_url))
    try:
        async with create_sessionmaker(engine, read_only=True)() as reads:
            await reads.execute(select(User.id).limit(1))
        assert rollbacks == 0
        async with create_sessionmaker(engine)() as writes:
            writes.add(User(email="rolled-back@example.com", password_hash="x"))
            await writes.flush()
            await writes.rollback()
        assert rollbacks >= 1
        async with create_sessionmaker(engine)() as check:
            written = select(User).where(User.email == "rolled-back@example.com")
            assert await check.scalar(written) is None
    finally:
        await engine.dispose()


# What a server process does first: read its settings, then open the database.
CONNECT = """
import asyncio
from sqlalchemy import text
from app.core.config import get_settings
from app.db.engine import create_engine

async def connect() -> None:
    engine = create_engine(get_settings())
    async with engine.connect() as connection:
        await connection.execute(text("select 1"))
    await engine.dispose()

asyncio.run(connect())
"""


def test_the_default_database_file_is_made_in_the_working_directory(tmp_path: Path) -> None:
    """The default DATABASE_URL names ./app.db: the folder the service runs in, never the one
    the code is in (tests/core/test_working_directory.py runs the package as installed)."""
    env = {name: value for name, value in os.environ.items() if name not in Settings.model_fields}
    env["PYTHONPATH"] = str(PROJECT_DIR)
    result = subprocess.run(
        [sys.executable, "-c", CONNECT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["app.db"]

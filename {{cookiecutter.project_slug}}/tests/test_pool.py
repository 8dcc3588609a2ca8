"""The connection pool keeps to its size under a load above it: no connection is opened and
closed again per request (SQLAlchemy closes an overflow connection that comes back to a full
pool, so any overflow would make a sustained load open server connections over and over)."""

import asyncio

from sqlalchemy import event, text

from app.core.config import Settings, get_settings
from app.db.engine import create_engine

POOL_SIZE = 2
CONCURRENT = 8
ROUNDS = 10


async def test_a_load_above_the_pool_size_opens_no_connection_beyond_it(
    migrated_database: str,
) -> None:
    settings = Settings(
        _env_file=None, DATABASE_URL=migrated_database, DATABASE_POOL_SIZE=POOL_SIZE
    )
    assert settings.DATABASE_MAX_OVERFLOW == get_settings().DATABASE_MAX_OVERFLOW == 0
    engine = create_engine(settings)
    opened = 0

    def count(*_args: object) -> None:
        nonlocal opened
        opened += 1

    event.listen(engine.sync_engine, "connect", count)
    busiest = 0

    async def one() -> None:
        nonlocal busiest
        async with engine.connect() as connection:
            busiest = max(busiest, engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]
            await connection.execute(text("SELECT pg_sleep(0.01)"))

    try:
        for _ in range(ROUNDS):
            await asyncio.gather(*(one() for _ in range(CONCURRENT)))
    finally:
        await engine.dispose()
    assert busiest == POOL_SIZE
    assert opened == POOL_SIZE

"""Alembic environment: async engine, the app's metadata, SQLite-safe batch migrations."""

import asyncio
import logging.config
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, NullPool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.core.config import get_settings
from app.core.project import PROJECT_SLUG
from app.db.base import UTCDateTime
from app.db.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    # Tests pass their own database in `sqlalchemy.url`; otherwise the app's setting.
    return config.get_main_option("sqlalchemy.url") or get_settings().DATABASE_URL


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Migrations use plain SQLAlchemy types, so they never import (and break with) app code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


# Batch mode lets SQLite alter tables (it copies them); other databases ignore it.
OPTIONS: dict[str, Any] = {
    "target_metadata": target_metadata,
    "render_as_batch": True,
    "compare_type": True,
    "render_item": _render_item,
}


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), literal_binds=True, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def _run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, **OPTIONS)
    with context.begin_transaction():
        context.run_migrations()


def _migration_engine() -> AsyncEngine:
    """A connection of the migrations' own, not the app's: an index build or a backfill on a
    big table may run far past the app's DATABASE_STATEMENT_TIMEOUT_MS, so there is no statement
    timeout; a lock it cannot get within MIGRATION_LOCK_TIMEOUT_MS fails the migration instead
    of queueing every request behind it (retry when the blocking transaction is gone)."""
    settings = get_settings()
    return create_async_engine(
        _database_url(),
        poolclass=NullPool,
        connect_args={
            "timeout": settings.DATABASE_CONNECT_TIMEOUT,
            "server_settings": {
                "application_name": f"{PROJECT_SLUG}-migrations",
                "statement_timeout": "0",
                "lock_timeout": str(settings.MIGRATION_LOCK_TIMEOUT_MS),
            },
        },
    )


async def run_migrations_online() -> None:
    engine = _migration_engine()
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())

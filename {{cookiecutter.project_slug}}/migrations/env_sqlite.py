"""Alembic environment: async engine, the app's metadata, SQLite-safe batch migrations."""

import asyncio
import logging.config
import warnings
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import get_settings
from app.db.base import UTCDateTime
from app.db.engine import create_engine
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


# SQLite cannot report expression indexes back (the unique lower(email)), so autogenerate leaves
# them out of its comparison and says so; the tests prove they hold by writing past them.
warnings.filterwarnings("ignore", message=".*expression-based index", category=SAWarning)
warnings.filterwarnings("ignore", message=".*expression-based index", category=UserWarning)


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
    """The app's engine: foreign keys on, and a write lock waited for (SQLite has no
    statement or lock timeout to lift)."""
    return create_engine(get_settings(), url=_database_url())


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

"""The engine for PostgreSQL: asyncpg, a connection pool, timeouts on every connection."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Environment, Settings
from app.core.project import PROJECT_SLUG


def _connect_errors_as_operational(engine: AsyncEngine) -> None:
    """Report a failed connection attempt the way the driver reports a lost one.

    asyncpg raises plain OSError or TimeoutError when the server cannot be reached, which
    SQLAlchemy passes through unwrapped; as OperationalError it gets the 503 every other
    database outage gets (see app/core/errors.py) instead of a 500.
    """

    @event.listens_for(engine.sync_engine, "do_connect")
    def _connect(
        dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any
    ) -> DBAPIConnection:
        dbapi = dialect.loaded_dbapi
        try:
            connection: DBAPIConnection = dbapi.connect(*cargs, **cparams)
        except dbapi.Error:
            raise
        except Exception as exc:
            raise dbapi.OperationalError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        return connection


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """A pooled asyncpg engine; every connection carries the statement timeout."""
    engine = create_async_engine(
        url or settings.DATABASE_URL,
        echo=settings.DATABASE_ECHO,
        # Bound values (an email, a password hash) stay out of error messages, and so out of
        # the logs, everywhere but on a developer's machine.
        hide_parameters=settings.ENVIRONMENT is not Environment.LOCAL,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT,
        pool_pre_ping=settings.DATABASE_POOL_PRE_PING,
        pool_recycle=settings.DATABASE_POOL_RECYCLE,
        connect_args={
            "timeout": settings.DATABASE_CONNECT_TIMEOUT,
            "server_settings": {
                "application_name": PROJECT_SLUG,
                "statement_timeout": str(settings.DATABASE_STATEMENT_TIMEOUT_MS),
            },
        },
    )
    _connect_errors_as_operational(engine)
    return engine


def read_only_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine that GET and HEAD requests read through: the same pool, no transaction.

    Each statement runs on its own (autocommit), so a read costs no BEGIN and COMMIT round
    trips and holds nothing between its statements; each statement sees what was committed
    when it started.
    """
    return engine.execution_options(isolation_level="AUTOCOMMIT")

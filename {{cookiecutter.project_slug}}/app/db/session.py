"""Engine, session factory and the one-unit-of-work-per-request session dependency."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection{% if cookiecutter.database == "postgresql" %}, Dialect{% endif %}
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import {% if cookiecutter.database == "postgresql" %}PROJECT_SLUG, {% endif %}Environment, Settings
from app.core.errors import AppError
{% if cookiecutter.database == "postgresql" %}

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
{%- else %}

def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, write-ahead logging, and transactions that take the write lock up front.

    The sqlite3 driver opens transactions lazily on its own, which breaks SAVEPOINT; SQLAlchemy's
    documented remedy is to switch that off and emit BEGIN ourselves. It is BEGIN IMMEDIATE: a
    transaction that starts as a reader and later writes cannot wait for the lock (SQLite answers
    "database is locked" at once to avoid a deadlock), while one that takes the write lock first
    waits its turn for up to busy_timeout. Writers queue; with WAL, readers never block them.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    engine = create_async_engine(
        url or settings.DATABASE_URL,
        echo=settings.DATABASE_ECHO,
        # Bound values (an email, a password hash) stay out of error messages, and so out of
        # the logs, everywhere but on a developer's machine.
        hide_parameters=settings.ENVIRONMENT is not Environment.LOCAL,
    )
    _configure_sqlite(engine)
    return engine
{%- endif %}


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """The factory made at start-up (tests swap in one bound to a rolled-back transaction)."""
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return factory


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


async def get_session(factory: SessionmakerDep) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request.

    Commits once after the endpoint returns and before the response is sent, or rolls back on
    any exception, so a client never sees a success whose data was not stored.
    """
    async with factory() as session:
        try:
            yield session
        except AppError as error:
            if error.keep_changes:
                await session.commit()
            else:
                await session.rollback()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

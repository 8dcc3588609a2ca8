"""Engine, session factory and the one-unit-of-work-per-request session dependency."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Settings
from app.core.errors import AppError


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, and transactions that SAVEPOINT works inside.

    The sqlite3 driver opens transactions lazily on its own, which breaks SAVEPOINT; SQLAlchemy's
    documented remedy is to switch that off and emit BEGIN ourselves.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    engine = create_async_engine(url or settings.DATABASE_URL, echo=settings.DATABASE_ECHO)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


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

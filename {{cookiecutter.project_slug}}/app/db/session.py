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
from sqlalchemy.orm import ORMExecuteState, Session
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
{%- else %}
# The execution option that picks SQLite's BEGIN for a transaction, and its values.
SQLITE_BEGIN = "sqlite_begin"
IMMEDIATE, NO_TRANSACTION = "IMMEDIATE", "none"


def _configure_sqlite(engine: AsyncEngine) -> None:
    """Foreign keys on, write-ahead logging, and BEGIN chosen per connection.

    The sqlite3 driver opens transactions lazily on its own, which breaks SAVEPOINT; SQLAlchemy's
    documented remedy is to switch that off and emit BEGIN ourselves. Which BEGIN comes from the
    connection's `sqlite_begin` execution option:
    - IMMEDIATE (the default, for anything that may write) takes the write lock up front. A
      transaction that starts as a reader and later writes cannot wait for the lock (SQLite
      answers "database is locked" at once to avoid a deadlock), while one that takes the write
      lock first waits its turn for up to busy_timeout. Writers queue.
    - none (GET and HEAD requests, see `read_only_engine`): no BEGIN at all. Each statement
      runs on its own and takes no write lock; with WAL, readers and the one writer never wait
      for each other.
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
        if connection.get_execution_options().get(SQLITE_BEGIN, IMMEDIATE) != NO_TRANSACTION:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    _roll_back_only_open_transactions(engine)


def _roll_back_only_open_transactions(engine: AsyncEngine) -> None:
    """Skip the ROLLBACK of a connection that has no transaction open.

    SQLAlchemy rolls a connection back when its session closes and again when the pool takes it
    back. On a read (no BEGIN) there is nothing to roll back, yet each ROLLBACK is a round trip
    to aiosqlite's thread: two of the ten a cached item read made. SQLite itself knows whether
    a transaction is open (`in_transaction`), so the rollback runs exactly when there is one.
    (SQLAlchemy's own `skip_autocommit_rollback` cannot tell: the driver's autocommit mode is
    on for every connection here, since BEGIN is ours.)
    """
    dialect = engine.dialect
    roll_back = dialect.do_rollback

    def do_rollback(dbapi_connection: Any) -> None:
        try:
            idle = not dbapi_connection.driver_connection.in_transaction
        except Exception:  # closed or broken: the plain rollback reports it as usual
            idle = False
        if not idle:
            roll_back(dbapi_connection)

    dialect.do_rollback = do_rollback  # type: ignore[method-assign]


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


def read_only_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine that GET and HEAD requests read through: the same pool, no BEGIN.

    Each statement runs on its own, so a read costs no BEGIN and COMMIT and never takes the
    write lock; each statement sees what was committed when it started.
    """
    return engine.execution_options(**{SQLITE_BEGIN: NO_TRANSACTION})
{%- endif %}


# Session.info flag of the sessions GET and HEAD requests read with (no transaction).
READ_ONLY = "read_only"


def create_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions for writes (one transaction each), or for reads (`read_only_engine`)."""
    if read_only:
        return async_sessionmaker(
            read_only_engine(engine), expire_on_commit=False, info={READ_ONLY: True}
        )
    return async_sessionmaker(engine, expire_on_commit=False)


# Methods that only read (RFC 9110, section 9.2.1): they read outside a transaction.
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """The factory made at start-up for this request's method: GET and HEAD read without a
    transaction, everything else gets one (tests swap in one bound to a rolled-back
    transaction, for every method)."""
    state = request.app.state
    if request.method in READ_ONLY_METHODS:
        reads: async_sessionmaker[AsyncSession] = state.read_sessionmaker
        return reads
    writes: async_sessionmaker[AsyncSession] = state.sessionmaker
    return writes


SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]


# Set in Session.info while the session's transaction holds changes flushed to the database.
_WROTE = "wrote_in_transaction"


class WriteInReadOnlySession(RuntimeError):
    """A GET or HEAD request tried to write: a bug, refused before anything is written."""


@event.listens_for(Session, "before_flush")
def _refuse_flush_when_read_only(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get(READ_ONLY):
        raise WriteInReadOnlySession("GET and HEAD requests may not write")


@event.listens_for(Session, "after_flush")
def _mark_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _mark_bulk_write(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        if state.session.info.get(READ_ONLY):
            raise WriteInReadOnlySession("GET and HEAD requests may not write")
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
def _clear_mark(session: Session) -> None:
    session.info.pop(_WROTE, None)


async def end_read_only_transaction(session: AsyncSession) -> None:
    """End the request's transaction before slow work that needs no database.

    Password hashing takes a tenth of a second or more; a transaction left open meanwhile holds
    a pooled connection, and on SQLite the write lock, for nothing. Services call this after
    their reads and before hashing: it commits the transaction, which holds only reads, so
    nothing is stored, and the objects loaded so far stay usable (expire_on_commit=False). The
    session's next statement opens a new transaction, which the session dependency commits or
    rolls back as usual, so the request still stores all of its writes or none of them.

    Refuses (RuntimeError) when the transaction holds changes, pending or flushed: committing
    them here would break that rule.
    """
    if session.new or session.dirty or session.deleted or session.info.get(_WROTE):
        raise RuntimeError("the transaction holds changes; only a read-only one may end early")
    if session.in_nested_transaction():
        raise RuntimeError("a savepoint is open; only a read-only transaction may end early")
    await session.commit()


async def get_session(factory: SessionmakerDep) -> AsyncIterator[AsyncSession]:
    """One session per request, and one transaction for its writes.

    Commits once after the endpoint returns and before the response is sent, or rolls back on
    any exception, so a client never sees a success whose data was not stored. GET and HEAD
    requests read without a transaction (`read_only_engine`): nothing to commit, and a write
    there is refused as a bug. A service may end a transaction that only read before it hashes
    a password (`end_read_only_transaction`).
    """
    async with factory() as session:
        if session.info.get(READ_ONLY):
            yield session
            return
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

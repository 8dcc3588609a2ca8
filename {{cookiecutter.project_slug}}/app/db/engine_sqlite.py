"""The engine for SQLite: aiosqlite, write-ahead logging, and BEGIN chosen per connection."""

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from app.core.config import Environment, Settings

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

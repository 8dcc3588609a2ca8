"""The settings of the PostgreSQL database: the URL's driver and default, the pool, the timeouts.

`Settings` (app/core/config.py) holds them with the rest.
"""

from pydantic import Field
from pydantic_settings import BaseSettings

from app.core.project import PROJECT_SLUG

DATABASE_DRIVER = "postgresql+asyncpg"
DATABASE_URL_EXAMPLE = f"postgresql+asyncpg://user:password@127.0.0.1:5432/{PROJECT_SLUG}"
DEFAULT_DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PROJECT_SLUG}"


class DatabaseSettings(BaseSettings):
    """The pool and the timeouts of one worker process's engine (app/db/engine.py)."""

    # Per worker process: connections kept open, and extra ones allowed in a burst. Keep
    # workers x (DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW) below the server's max_connections.
    # No overflow by default: the pool closes an extra connection as soon as it is returned while
    # DATABASE_POOL_SIZE others are idle, so a load that stays above the pool size opens and
    # closes a server connection every few requests (README, "Sizing the pool").
    DATABASE_POOL_SIZE: int = Field(default=20, ge=1, le=500)
    DATABASE_MAX_OVERFLOW: int = Field(default=0, ge=0, le=500)
    # Seconds a request waits for a free connection before it gets a 503.
    DATABASE_POOL_TIMEOUT: float = Field(default=10, gt=0, le=300)
    # Test each pooled connection before use (one round trip per request), so one dropped by a
    # restart or an idle-killing proxy is replaced unseen. Off: a dead connection costs its
    # request a 503 and is replaced; turn it on behind pgbouncer or a proxy that drops idle
    # connections. Connections are replaced after DATABASE_POOL_RECYCLE seconds either way.
    DATABASE_POOL_PRE_PING: bool = False
    DATABASE_POOL_RECYCLE: int = Field(default=1800, ge=-1, le=86_400)
    # Seconds to wait for a new connection, and milliseconds any one statement may run (0: no
    # limit); both turn a stuck database into a prompt 503 instead of a hung request.
    DATABASE_CONNECT_TIMEOUT: float = Field(default=5, gt=0, le=120)
    DATABASE_STATEMENT_TIMEOUT_MS: int = Field(default=15_000, ge=0, le=3_600_000)
    # Migrations run with no statement timeout (an index build may take long), but wait at
    # most this many milliseconds for a lock (0: forever) rather than stall the app behind them.
    MIGRATION_LOCK_TIMEOUT_MS: int = Field(default=10_000, ge=0, le=3_600_000)

"""The jobs engine the app's lifespan starts: the relay that hands jobs to RabbitMQ for the
Dramatiq workers (app/jobs/broker.py), or with JOBS_ENGINE=embedded the embedded runner
(app/jobs/runner.py), which needs no RabbitMQ.
"""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.jobs.broker import Relay
from app.jobs.executor import JobsEngine
from app.jobs.runner import JobRunner


def create_jobs_engine(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    read_sessionmaker: async_sessionmaker[AsyncSession],
) -> JobsEngine | None:
    """One relay (or runner) per worker process, on that process's pool; None when
    JOBS_ENABLED is off (the process only enqueues)."""
    if not settings.JOBS_ENABLED:
        return None
    if settings.JOBS_ENGINE == "embedded":
        return JobRunner(settings, sessionmaker=sessionmaker, read_sessionmaker=read_sessionmaker)
    return Relay(settings, sessionmaker=sessionmaker, read_sessionmaker=read_sessionmaker)

"""The jobs engine the app's lifespan starts: the embedded runner (app/jobs/runner.py).

The Dramatiq variant of this project starts a relay to RabbitMQ here instead.
"""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.jobs.executor import JobsEngine
from app.jobs.runner import JobRunner


def create_jobs_engine(
    settings: Settings,
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    read_sessionmaker: async_sessionmaker[AsyncSession],
) -> JobsEngine | None:
    """One runner per worker process, on that process's pool; None when JOBS_ENABLED is off
    (the process only enqueues)."""
    if not settings.JOBS_ENABLED:
        return None
    return JobRunner(settings, sessionmaker=sessionmaker, read_sessionmaker=read_sessionmaker)

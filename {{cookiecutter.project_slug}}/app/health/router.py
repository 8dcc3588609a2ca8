"""Liveness and readiness probes (public, and answered whatever the Host header: see main.py)."""

import logging
from typing import Literal

from fastapi import APIRouter
from sqlalchemy import text

from app.core.errors import RateLimitUnavailable, ServiceUnavailable, problem_responses
from app.core.ratelimit import RateLimiterDep
from app.core.schemas import ReadSchema
from app.db.session import SessionmakerDep

logger = logging.getLogger(__name__)

router = APIRouter()


class HealthStatus(ReadSchema):
    # "degraded": serving, but rate limits are not counted (their storage is unreachable).
    status: Literal["ok", "degraded"] = "ok"


@router.get("/live", response_model=HealthStatus)
async def live() -> HealthStatus:
    """The process is up and serving requests."""
    return HealthStatus()


@router.get("/ready", response_model=HealthStatus, responses=problem_responses(503))
async def ready(factory: SessionmakerDep, limiter: RateLimiterDep) -> HealthStatus:
    """The service can reach its database; 503 while it cannot.

    Also its rate limit storage: when that is down, "degraded" if limits fail open, else 503.
    """
    try:
        async with factory() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        # The probe's caller sees only the 503; whoever reads the logs needs the cause.
        cause = f"{type(exc).__name__}: {exc}"
        logger.warning("not ready: the database cannot be reached: %s", cause)
        raise ServiceUnavailable from exc
    # An outage of the limit storage is logged by the limiter, once, when a request meets it.
    if not await limiter.storage_reachable():
        if not limiter.fail_open:
            raise RateLimitUnavailable
        return HealthStatus(status="degraded")
    return HealthStatus()

"""Liveness and readiness probes (public)."""

from typing import Literal

from fastapi import APIRouter
from sqlalchemy import text

from app.core.errors import ServiceUnavailable, problem_responses
from app.core.schemas import Schema
from app.db.session import SessionmakerDep

router = APIRouter()


class HealthStatus(Schema):
    status: Literal["ok"] = "ok"


@router.get("/live", response_model=HealthStatus)
async def live() -> HealthStatus:
    """The process is up and serving requests."""
    return HealthStatus()


@router.get("/ready", response_model=HealthStatus, responses=problem_responses(503))
async def ready(factory: SessionmakerDep) -> HealthStatus:
    """The service can reach its database; 503 while it cannot."""
    try:
        async with factory() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable from exc
    return HealthStatus()

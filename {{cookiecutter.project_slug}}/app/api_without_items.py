"""The /api/v1 routes: one include line per domain router, each straight on the app.

Protected by default: every router is included with `PROTECTED` or `include_checked_by_route`
(app/routing.py), and only the routers in `PUBLIC_ROUTERS` can be reached without a token.

Each router is included into the app itself, not into a router that is included in turn: a
request is matched against each level of nesting, so one level keeps routing cheap however
many resources are added (`make bench` measures it).
"""

from fastapi import APIRouter, FastAPI

from app.auth.router import protected_router as auth_protected_router
from app.auth.router import router as auth_router
from app.health.router import router as health_router
from app.jobs.router import admin_router as jobs_admin_router
from app.routing import PROTECTED, PUBLIC, include_checked_by_route
from app.users.router import admin_router as users_admin_router
from app.users.router import router as users_router

API_PREFIX = "/api/v1"

# The routers anyone may call; every other one is protected.
PUBLIC_ROUTERS: tuple[APIRouter, ...] = (auth_router, health_router)


def include_api(app: FastAPI) -> None:
    app.include_router(auth_router, prefix=f"{API_PREFIX}/auth", tags=["auth"], **PUBLIC)
    app.include_router(health_router, prefix=f"{API_PREFIX}/health", tags=["health"])

    app.include_router(
        auth_protected_router, prefix=f"{API_PREFIX}/auth", tags=["auth"], **PROTECTED
    )
    include_checked_by_route(app, users_router, prefix=f"{API_PREFIX}/users", tag="users")
    app.include_router(
        users_admin_router, prefix=f"{API_PREFIX}/users", tags=["users"], **PROTECTED
    )
    app.include_router(jobs_admin_router, prefix=f"{API_PREFIX}/jobs", tags=["jobs"], **PROTECTED)

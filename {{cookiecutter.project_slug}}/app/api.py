"""The /api/v1 router: one include line per domain.

Protected by default: everything in `protected` needs a valid access token, checked once at
router level. Only what is in `public` can be reached without one.

Rate limited by default too: the default limit (per client address) is counted before the
token is checked, so requests with bad tokens count as well. Health probes are not limited.
"""

from fastapi import APIRouter, Depends

from app.auth.dependencies import get_current_user
from app.auth.router import protected_router as auth_protected_router
from app.auth.router import router as auth_router
from app.core.errors import problem_responses
from app.core.http_cache import private_cache
from app.core.ratelimit import limit_default
from app.health.router import router as health_router
{%- if cookiecutter.include_example_resource %}
from app.items.router import router as items_router
{%- endif %}
from app.users.router import admin_router as users_admin_router
from app.users.router import router as users_router

public = APIRouter()
public.include_router(
    auth_router,
    prefix="/auth",
    tags=["auth"],
    dependencies=[Depends(limit_default)],
    responses=problem_responses(429, 503),
)
public.include_router(health_router, prefix="/health", tags=["health"])

protected = APIRouter(
    dependencies=[Depends(limit_default), Depends(get_current_user), Depends(private_cache)],
    responses=problem_responses(401, 429, 503),
)
protected.include_router(auth_protected_router, prefix="/auth", tags=["auth"])
protected.include_router(users_router, prefix="/users", tags=["users"])
protected.include_router(users_admin_router, prefix="/users", tags=["users"])
{%- if cookiecutter.include_example_resource %}
protected.include_router(items_router, prefix="/items", tags=["items"])
{%- endif %}

api_router = APIRouter(prefix="/api/v1")
api_router.include_router(public)
api_router.include_router(protected)

"""How the API's routers are included: protected by default, rate limited by default.

A router included with `PROTECTED` needs a valid access token and an active account
(`get_principal`: the token's user, checked against the database on every request). A router
whose every route loads what it needs with that check in the same query (a dependency marked
`checks_account`, such as `CurrentUser`) is included with `include_checked_by_route` instead,
which refuses to start the app if any of its routes lacks one. `PUBLIC` routers can be reached
without a token; app/api.py lists them in `PUBLIC_ROUTERS`.

The default rate limit (per client address) is counted before the token is checked, so
requests with bad tokens count as well. Health probes are not limited.
"""

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.auth.dependencies import ACCOUNT_CHECKS, get_principal
from app.core.errors import problem_responses
from app.core.http_cache import private_cache
from app.core.ratelimit import limit_default

PUBLIC: dict[str, Any] = {
    "dependencies": [Depends(limit_default)],
    "responses": problem_responses(429, 503),
}
_PROTECTED_RESPONSES = problem_responses(401, 429, 503)
PROTECTED: dict[str, Any] = {
    "dependencies": [Depends(limit_default), Depends(get_principal), Depends(private_cache)],
    "responses": _PROTECTED_RESPONSES,
}
# PROTECTED but for the separate account check, which each route's own query makes.
CHECKED_BY_ROUTE: dict[str, Any] = {
    "dependencies": [Depends(limit_default), Depends(private_cache)],
    "responses": _PROTECTED_RESPONSES,
}


def checks_the_account(dependant: Dependant) -> bool:
    """Whether the dependency tree holds an account check (`checks_account`)."""
    if dependant.call in ACCOUNT_CHECKS:
        return True
    return any(checks_the_account(sub) for sub in dependant.dependencies)


def include_checked_by_route(app: FastAPI, router: APIRouter, *, prefix: str, tag: str) -> None:
    """Include a router whose routes each check the account in their own query.

    Refuses (RuntimeError, when the app is built) a router with a route that does not: a route
    added there without such a dependency would otherwise answer with a valid token alone.
    """
    unchecked = [
        f"{sorted(route.methods or ())} {prefix}{route.path}"
        for route in router.routes
        if isinstance(route, APIRoute) and not checks_the_account(route.dependant)
    ]
    if unchecked:
        raise RuntimeError(
            "these routes are included without the router's account check and make none "
            f"of their own (depend on a `checks_account` dependency): {', '.join(unchecked)}"
        )
    app.include_router(router, prefix=prefix, tags=[tag], **CHECKED_BY_ROUTE)

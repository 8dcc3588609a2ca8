"""Properties of the whole app, checked by walking its routes."""

import inspect
import uuid

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from app.core.config import Settings
from app.main import create_app

PUBLIC_PREFIXES = ("/api/v1/auth/", "/api/v1/health/")


def _api_routes(app: FastAPI) -> list[APIRoute]:
    return [route for route in app.routes if isinstance(route, APIRoute)]


def _calls(dependant: Dependant) -> list[object]:
    found: list[object] = [dependant.call] if dependant.call else []
    for sub in dependant.dependencies:
        found.extend(_calls(sub))
    return found


def _is_async(call: object) -> bool:
    target = call if inspect.isfunction(call) else getattr(call, "__call__", call)  # noqa: B004
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def test_every_route_and_dependency_is_async() -> None:
    """A sync `def` on the request path runs in the thread pool and halves throughput."""
    for route in _api_routes(create_app()):
        for call in _calls(route.dependant):
            assert _is_async(call), f"{route.path}: {call} is not async"


def test_every_route_declares_a_response_model() -> None:
    for route in _api_routes(create_app()):
        if route.status_code == 204:
            continue
        assert route.response_model is not None, route.path


async def test_only_public_routes_answer_without_a_token(client: AsyncClient) -> None:
    """Authenticated by default: anything outside the public router must refuse anonymous calls."""
    for route in _api_routes(create_app()):
        if route.path.startswith(PUBLIC_PREFIXES):
            continue
        path = route.path.replace("{item_id}", str(uuid.uuid4())).replace(
            "{user_id}", str(uuid.uuid4())
        )
        for method in route.methods or ():
            response = await client.request(method, path)
            assert response.status_code == 401, (method, route.path)


async def test_lifespan_opens_the_configured_database(migrated_database: str) -> None:
    app = create_app()
    async with app.router.lifespan_context(app), app.state.sessionmaker() as session:
        assert await session.scalar(text("SELECT 1")) == 1


async def test_cors_allows_only_the_configured_origins() -> None:
    settings = Settings(_env_file=None, CORS_ORIGINS=["https://app.example.com"])
    app = create_app(settings)
    preflight = {"Access-Control-Request-Method": "POST"}
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        allowed = await client.options(
            "/api/v1/auth/login", headers={"Origin": "https://app.example.com", **preflight}
        )
        refused = await client.options(
            "/api/v1/auth/login", headers={"Origin": "https://evil.example.com", **preflight}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in refused.headers


async def test_without_cors_origins_no_cors_headers_are_sent(client: AsyncClient) -> None:
    response = await client.get(
        "/api/v1/health/live", headers={"Origin": "https://app.example.com"}
    )
    assert "access-control-allow-origin" not in response.headers

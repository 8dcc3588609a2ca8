"""Properties of the whole app, checked by walking its routes."""

import inspect
import re
import typing
import uuid
from collections.abc import Sequence
from typing import Annotated, Any

import fastapi.routing
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from sqlalchemy import text
from starlette.routing import BaseRoute

from app.api import PUBLIC_ROUTERS
from app.auth.dependencies import (
    CurrentUser,
    TokenClaims,
    get_admin,
    get_principal,
)
from app.core.config import Settings
from app.core.errors import PROBLEM_JSON
from app.core.http_cache import IfMatch, IfNoneMatch, private_cache
from app.core.schemas import FORBIDDEN_CHARACTER
from app.db.session import get_session, get_sessionmaker
from app.main import create_app
from app.routing import checks_the_account, include_checked_by_route


def _walk(routes: Sequence[BaseRoute]) -> list[Any]:
    """The API routes under these routes, with their paths as served from there.

    Newer FastAPI keeps included routers nested (`iter_route_contexts` walks them, as FastAPI's
    own OpenAPI generation does); older versions copy every route into the including router.
    """
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # pragma: no cover - depends on the FastAPI version
        return [route for route in routes if isinstance(route, APIRoute)]
    return [
        context
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
    ]


# What the explicitly public routers serve, as the app serves it; everything else must need a
# token.
_PUBLIC_ROUTES = [route for router in PUBLIC_ROUTERS for route in router.routes]
PUBLIC_PATHS = frozenset(
    context.path
    for context in _walk(create_app().routes)
    # Older FastAPI copies each included route, so a route is known by its endpoint function.
    if any(
        getattr(context, "original_route", context).endpoint is getattr(route, "endpoint", None)
        for route in _PUBLIC_ROUTES
    )
)


def _api_routes(app: FastAPI) -> list[Any]:
    """Every API route as served: full path, methods and the whole dependency tree."""
    routes = _walk(app.routes)
    operations = [
        (path, method.upper()) for path, item in app.openapi()["paths"].items() for method in item
    ]
    # The walk must see exactly what the API offers, or the checks below prove nothing.
    assert sorted((r.path, m) for r in routes for m in r.methods) == sorted(operations)
    return routes


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


def _url(route: Any) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path)


def _is_admin_only(route: Any) -> bool:
    return get_admin in _calls(route.dependant)


async def test_only_public_routes_answer_without_a_token(client: AsyncClient) -> None:
    """Authenticated by default: anything outside the public router must refuse anonymous calls."""
    checked = set()
    for route in _api_routes(create_app()):
        if route.path in PUBLIC_PATHS:
            continue
        for method in route.methods:
            response = await client.request(method, _url(route))
            assert response.status_code == 401, (method, route.path)
            checked.add((method, route.path))
    # A protected route that shares the public /auth prefix is walked too.
    assert ("POST", "/api/v1/auth/logout-all") in checked


def test_every_protected_route_checks_the_account_in_the_database() -> None:
    """A valid token alone is not enough anywhere: each protected route depends on an account
    check (`get_principal`, or a query of its own marked `checks_account`), so a deactivated
    user or an outdated token is refused on the very next request."""
    protected = [r for r in _api_routes(create_app()) if r.path not in PUBLIC_PATHS]
    assert protected
    for route in protected:
        assert checks_the_account(route.dependant), route.path
    # The read of one's own account checks it in its own query, with no separate check.
    me = next(r for r in protected if r.path == "/api/v1/users/me" and "GET" in r.methods)
    assert get_principal not in _calls(me.dependant)


# Reads of one resource whose session lives only for their query (see How a request flows).
SHORT_SESSION_READS = ("/api/v1/users/me", "/api/v1/items/{item_id}")


def test_reads_of_one_resource_hold_no_session_around_the_request() -> None:
    """Their dependency opens and closes its session around the one query: no `SessionDep`
    (a dependency that yields, entered and left around the whole request) on their path."""
    reads = {r.path: r for r in _api_routes(create_app()) if "GET" in r.methods}
    found = [path for path in SHORT_SESSION_READS if path in reads]
    assert "/api/v1/users/me" in found
    for path in found:
        calls = _calls(reads[path].dependant)
        assert get_session not in calls, path
        assert get_sessionmaker in calls, path  # the factory the tests swap


def test_a_router_included_without_the_account_check_needs_one_on_every_route() -> None:
    """`include_checked_by_route` refuses, when the app is built, a route that checks nothing."""
    router = APIRouter()

    @router.get("/mine")
    async def checked(user: CurrentUser) -> None:
        return None

    @router.get("/open")
    async def forgotten(claims: TokenClaims) -> None:
        return None

    with pytest.raises(RuntimeError, match=r"\['GET'\] /api/v1/things/open"):
        include_checked_by_route(FastAPI(), router, prefix="/api/v1/things", tag="things")


async def test_every_admin_route_refuses_a_user(
    client: AsyncClient, user_headers: dict[str, str]
) -> None:
    """Found by their dependency on get_admin, so a new admin route is covered without a test."""
    admin_routes = [route for route in _api_routes(create_app()) if _is_admin_only(route)]
    assert len(admin_routes) >= 4  # GET /users, GET, PATCH and DELETE /users/{user_id}
    for route in admin_routes:
        for method in route.methods:
            response = await client.request(method, _url(route), headers=user_headers)
            assert response.status_code == 403, (method, route.path)
            assert response.json()["code"] == "admin_required"


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
        simple = await client.get(
            "/api/v1/health/live", headers={"Origin": "https://app.example.com"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == "https://app.example.com"
    # Bearer tokens, not cookies: browsers are never told to send credentials.
    for response in (allowed, refused, simple):
        assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({"Origin": "https://evil.example.com"}, "origin"),
        ({"Access-Control-Request-Method": "PUT"}, "method"),
        ({"Access-Control-Request-Headers": "X-Secret"}, "headers"),
    ],
    ids=["origin", "method", "header"],
)
async def test_a_refused_preflight_is_a_problem(headers: dict[str, str], refused: str) -> None:
    app = create_app(Settings(_env_file=None, CORS_ORIGINS=["https://app.example.com"]))
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "POST",
        **headers,
    }
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        response = await client.options("/api/v1/auth/login", headers=preflight)
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["code"] == "cors_preflight_refused"
    assert problem["detail"].endswith(f"refused: {refused}.")
    assert "Origin" in response.headers["vary"]
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_without_cors_origins_no_cors_headers_are_sent(client: AsyncClient) -> None:
    response = await client.get(
        "/api/v1/health/live", headers={"Origin": "https://app.example.com"}
    )
    assert "access-control-allow-origin" not in response.headers


def test_patch_schemas_document_which_fields_may_not_be_null() -> None:
    """Fields that reject an explicit null are not nullable in OpenAPI either."""
    schemas = create_app().openapi()["components"]["schemas"]

    def nullable(schema: str, field: str) -> bool:
        options = schemas[schema]["properties"][field].get("anyOf", [])
        return {"type": "null"} in options

    assert not nullable("UserUpdateAdmin", "role")
    assert not nullable("UserUpdateAdmin", "is_active")
    assert not nullable("UserUpdateMe", "password")
    assert nullable("UserUpdateMe", "full_name")


def test_protected_routes_document_401_and_admin_routes_403() -> None:
    app = create_app()
    paths = app.openapi()["paths"]
    for route in _api_routes(app):
        for method in route.methods:
            responses = paths[route.path][method.lower()]["responses"]
            if route.path not in PUBLIC_PATHS:
                assert "401" in responses, (method, route.path)
            if _is_admin_only(route):
                assert "403" in responses, (method, route.path)


def _unbounded_strings(schema: Any, components: dict[str, Any], where: str) -> list[str]:
    """Places in a request schema where a string has no maxLength (enums and uploads aside)."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _unbounded_strings(components[name], components, f"{where} -> {name}")
    found = []
    if (
        schema.get("type") == "string"
        and "maxLength" not in schema
        and "enum" not in schema
        and "const" not in schema
        and schema.get("format") not in {"binary", "uuid"}
    ):
        found.append(where)
    for key, child in schema.get("properties", {}).items():
        found += _unbounded_strings(child, components, f"{where}.{key}")
    for keyword in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(keyword, []):
            found += _unbounded_strings(child, components, where)
    found += _unbounded_strings(schema.get("items"), components, f"{where}[]")
    return found


def test_every_string_a_client_sends_has_a_max_length() -> None:
    document = create_app().openapi()
    components = document["components"]["schemas"]
    unbounded: list[str] = []
    checked = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                checked += 1
                unbounded += _unbounded_strings(
                    parameter["schema"], components, f"{where} {parameter['name']}"
                )
            for media in operation.get("requestBody", {}).get("content", {}).values():
                checked += 1
                unbounded += _unbounded_strings(media["schema"], components, f"{where} body")
    assert checked > 5  # the walk saw the request schemas
    assert unbounded == []
    # The check itself notices an unbounded string.
    assert _unbounded_strings({"type": "string"}, components, "probe") == ["probe"]


async def test_every_protected_response_is_kept_privately_or_not_at_all(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    """Found by walking the routes, so a new protected route is covered without a test."""
    protected = [route for route in _api_routes(create_app()) if route.path not in PUBLIC_PATHS]
    for route in protected:
        assert private_cache in _calls(route.dependant), route.path
    # Signing out everywhere last, so the token works for every other route.
    calls = sorted(
        ((method, route) for route in protected for method in route.methods),
        key=lambda call: call[1].path.endswith("/logout-all"),
    )
    statuses = set()
    for method, route in calls:
        response = await client.request(method, _url(route), headers=admin_headers)
        statuses.add(response.status_code)
        cache_control = response.headers.get("cache-control", "")
        assert "public" not in cache_control, (method, route.path)
        if response.is_success:
            assert cache_control == "private, no-cache", (method, route.path)
            assert response.headers["vary"] == "Authorization", (method, route.path)
        else:
            assert cache_control == "no-store", (method, route.path)
    assert {200, 204, 404, 422} <= statuses  # successes and errors were both walked


def _depends_on(route: Any, alias: Any) -> bool:
    return alias.__metadata__[0].dependency in _calls(route.dependant)


def test_conditional_routes_document_their_headers_and_answers() -> None:
    app = create_app()
    paths = app.openapi()["paths"]
    reads = writes = 0
    for route in _api_routes(app):
        for method in route.methods:
            operation = paths[route.path][method.lower()]
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if _depends_on(route, IfNoneMatch):
                reads += 1
                assert "if-none-match" in headers, (method, route.path)
                assert "content" not in operation["responses"]["304"], (method, route.path)
                assert "ETag" in operation["responses"]["200"]["headers"], (method, route.path)
            if _depends_on(route, IfMatch):
                writes += 1
                assert "if-match" in headers, (method, route.path)
                assert PROBLEM_JSON in operation["responses"]["412"]["content"], route.path
    assert reads >= 2  # at least GET /users/me and GET /users/{user_id}
    assert writes >= 3  # at least PATCH /users/me, PATCH and DELETE /users/{user_id}


def _with_slash_toggled(path: str) -> str:
    return path.removesuffix("/") if path.endswith("/") else f"{path}/"


async def test_no_route_redirects_to_a_slash_variant() -> None:
    """A redirect would take its host from the Host header: /items/ is a 404, not a 307."""
    app = create_app()
    paths = list(app.openapi()["paths"])
    assert len(paths) > 5
    seen = []
    async with AsyncClient(
        transport=ASGITransport(app=app), base_url="http://evil.example"
    ) as client:
        for path in paths:
            url = _with_slash_toggled(re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path))
            for method in app.openapi()["paths"][path]:
                response = await client.request(method.upper(), url)
                seen.append((method, url, response.status_code))
                assert response.status_code == 404, (method, url, response.status_code)
                assert "location" not in response.headers
                assert response.headers["content-type"] == PROBLEM_JSON
    assert ("get", "/api/v1/users/me/", 404) in seen


def _templates_matching(url: str, paths: dict[str, Any]) -> list[str]:
    return [path for path in paths if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", path), url)]


async def test_a_405_allows_every_method_of_the_path(client: AsyncClient) -> None:
    """RFC 9110: Allow names the methods of the resource, not of the one route that matched.

    HEAD and OPTIONS are not served (CORS preflights aside, answered before routing), so they
    are 405s too, and never in Allow.
    """
    paths = create_app().openapi()["paths"]
    checked = 0
    for path in paths:
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        # /users/me is also matched by /users/{user_id}: a URL has the methods of both.
        templates = _templates_matching(url, paths)
        allowed = {method.upper() for template in templates for method in paths[template]}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"} - allowed:
            response = await client.request(method, url)
            assert response.status_code == 405, (method, url)
            assert response.headers["content-type"] == PROBLEM_JSON
            assert set(response.headers["allow"].split(", ")) == allowed, (method, url)
            checked += 1
    assert checked > 20
    # GET and PATCH share /users/me with different routes; a PUT names both (and DELETE, which
    # /users/{user_id} serves for "me" too: it answers, so it is allowed).
    response = await client.put("/api/v1/users/me")
    assert response.headers["allow"] == "DELETE, GET, PATCH"


def _flat_params(dependant: Dependant) -> list[Any]:
    params = [
        *dependant.path_params,
        *dependant.query_params,
        *dependant.header_params,
        *dependant.cookie_params,
        *dependant.body_params,
    ]
    for sub in dependant.dependencies:
        params += _flat_params(sub)
    return params


def _admits_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    return any(_admits_str(argument) for argument in typing.get_args(annotation))


def _refusals(annotation: Any, field: FieldInfo, value: str) -> list[str]:
    """The error types a field gives for `value`, validated with its own constraints."""
    target: Any = Annotated[annotation, *field.metadata] if field.metadata else annotation
    try:
        TypeAdapter[Any](target).validate_python(value)
    except ValidationError as error:
        return [issue["type"] for issue in error.errors()]
    return []


def test_every_string_a_client_sends_refuses_nul() -> None:
    """Every field of every request model and every parameter of every route, found by walking
    the routes: a NUL is refused before anything else is checked (no database can store it)."""
    checked: list[str] = []
    for route in _api_routes(create_app()):
        for param in _flat_params(route.dependant):
            annotation = param.field_info.annotation
            where = f"{route.path} {param.name}"
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                for name in annotation.model_fields:
                    try:
                        annotation.model_validate({name: "a\x00b"})
                    except ValidationError as error:
                        found = {(issue["loc"], issue["type"]) for issue in error.errors()}
                    else:  # pragma: no cover - the failure this test exists for
                        found = set()
                    assert ((name,), FORBIDDEN_CHARACTER) in found, f"{where}.{name}"
                    checked.append(f"{where}.{name}")
            elif _admits_str(annotation):  # pragma: no cover - no such parameter yet
                refusals = _refusals(annotation, param.field_info, "a\x00b")
                assert FORBIDDEN_CHARACTER in refusals, where
                checked.append(where)
            else:
                assert _refusals(annotation, param.field_info, "a\x00b"), where
    assert {
        "/api/v1/auth/register data.full_name",
        "/api/v1/auth/login form.username",
        "/api/v1/auth/login form.password",
        "/api/v1/users/me data.current_password",
    } <= set(checked)

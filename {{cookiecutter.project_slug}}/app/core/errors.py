"""Domain errors and their RFC 9457 problem-details rendering.

Services raise `AppError` subclasses; they never know about HTTP beyond a status code. Every
error the API returns, validation and unexpected ones included, is `application/problem+json`.
"""

import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from itertools import islice
from typing import Any, ClassVar

import fastapi.routing
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import Scope

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AppError(Exception):
    """An error the client can act on, with a stable machine-readable `code`."""

    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    message: ClassVar[str] = "The request could not be processed."
    # A few errors must keep what the request wrote before failing (a revoked token family
    # must stay revoked); the session dependency commits instead of rolling back for those.
    keep_changes: ClassVar[bool] = False

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.message
        super().__init__(self.detail)

    @property
    def headers(self) -> Mapping[str, str] | None:
        return None


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    message = "The resource does not exist."


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    message = "The request conflicts with the current state of the resource."


class PermissionDenied(AppError):
    status_code = 403
    code = "permission_denied"
    message = "You are not allowed to do this."


class Unauthorized(AppError):
    status_code = 401
    code = "not_authenticated"
    message = "Valid credentials are required."

    @property
    def headers(self) -> Mapping[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class PreconditionFailed(AppError):
    status_code = 412
    code = "precondition_failed"
    message = "The resource has changed since you read it (If-Match); read it again and retry."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "database_unavailable"
    message = "The database is unavailable; try again shortly."

    @property
    def headers(self) -> Mapping[str, str] | None:
        return {"Retry-After": "5"}


class TooManyRequests(AppError):
    status_code = 429
    code = "rate_limited"
    message = "Too many requests; retry after the number of seconds in Retry-After."

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    @property
    def headers(self) -> Mapping[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class RateLimitUnavailable(ServiceUnavailable):
    code = "rate_limit_unavailable"
    message = "Requests cannot be counted against their rate limits right now; try again shortly."


class Problem(BaseModel):
    """RFC 9457 problem details, as documented in the OpenAPI schema."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str


# A 422 lists this many errors at most, and each name in a location this many characters: what
# an invalid request costs to answer stays small however much is wrong with it.
MAX_LISTED_ERRORS = 20
MAX_LOCATION_PART = 64


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationProblem(Problem):
    errors: list[ValidationIssue] = Field(max_length=MAX_LISTED_ERRORS)
    error_count: int = Field(description="How many errors were found; `errors` lists the first.")


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    # An error is about one request at one moment: no cache may keep it (RFC 9111 section 5.2.2.5).
    headers = {"Cache-Control": "no-store", **(headers or {})}
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` entry that documents these error statuses in OpenAPI."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        model = ValidationProblem if status == 422 else Problem
        documented[status] = {
            "model": model,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
    return documented


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(exc.status_code, exc.code, exc.detail, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # Only location, message and type: never echo the input back (it may be a password).
    issues = [
        {"loc": _location(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in islice(errors, MAX_LISTED_ERRORS)
    ]
    return problem_response(
        422, "validation_error", "The request is not valid.", errors=issues, error_count=len(errors)
    )


def _location(loc: Iterable[str | int]) -> list[str | int]:
    """The location, with any name cut short (an unknown key may be as long as the body)."""
    return [
        part[:MAX_LOCATION_PART] + "..."
        if isinstance(part, str) and len(part) > MAX_LOCATION_PART
        else part
        for part in loc
    ]


# The framework's own errors (the app itself raises AppError subclasses only).
_HTTP_ERROR_CODES = {
    400: "malformed_request",  # e.g. a body that is not even text
    404: "not_found",
    405: "method_not_allowed",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(sorted(_methods_of_path(request)))}
    return problem_response(
        exc.status_code,
        _HTTP_ERROR_CODES.get(exc.status_code, "http_error"),
        detail,
        headers=headers,
    )


def route_path(scope: Scope) -> str:
    """The path the routes match: the request's path without the app's root path, if any."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):
        return path[len(root) :]
    return path


def _routes(app: FastAPI) -> Iterable[BaseRoute]:
    """Every route of the app. Newer FastAPI keeps included routers nested, and walks them with
    `iter_route_contexts`; older versions copy every route into the app's router."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # pragma: no cover - depends on the FastAPI version
        return app.routes
    routes: Iterable[BaseRoute] = iter_route_contexts(app.routes)
    return routes


def _methods_of_path(request: Request) -> set[str]:
    """Every method some route serves at the request's path (RFC 9110: the resource's methods).

    The router's own 405 names the methods of the first route that matched the path only.
    """
    path = route_path(request.scope)
    methods: set[str] = set()
    for route in _routes(request.app):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= getattr(route, "methods", None) or set()
    return methods


# SQLSTATE classes that say the database cannot serve now, not that the request is wrong:
# connection exception, transaction rollback (deadlock, serialization failure), insufficient
# resources, operator intervention (shutdown, statement timeout).
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
# SQLite's counterparts: locked past busy_timeout, the file cannot be opened, read or written.
_UNAVAILABLE_SQLITE_ERRORS = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR")


def is_database_unavailable(exc: SQLAlchemyError) -> bool:
    """Whether the error is the database being down, overloaded or slow (a retryable 503),
    rather than a bug such as a missing table (a 500)."""
    if isinstance(exc, PoolTimeoutError):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlite_error = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(sqlite_error, str):
        return sqlite_error.startswith(_UNAVAILABLE_SQLITE_ERRORS)
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)


def is_foreign_key_violation(exc: IntegrityError) -> bool:
    """Whether a write failed because a row it refers to is gone (such as a user deleted by
    another request between this request's read and its insert)."""
    sqlite_error = getattr(exc.orig, "sqlite_errorname", None)
    if isinstance(sqlite_error, str):
        return sqlite_error == "SQLITE_CONSTRAINT_FOREIGNKEY"
    return getattr(exc.orig, "sqlstate", None) == "23503"  # foreign_key_violation


def _drop_driver_details(exc: BaseException) -> None:
    """Where the engine hides bound values, PostgreSQL's DETAIL goes too: it repeats them
    ("Failing row contains (...)", "Key (email)=(...)"), and asyncpg's error text includes it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.startswith("asyncpg") and hasattr(current, "detail"):
            current.detail = None
        current = current.__cause__ or current.__context__


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SQLAlchemyError)
    if not is_database_unavailable(exc):
        if getattr(exc, "hide_parameters", False):
            _drop_driver_details(exc)
        raise exc  # a bug, not an outage: the request middleware logs it and answers 500
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig else exc
    logger.error("database unavailable: %s", type(cause).__name__)
    return await _app_error(request, ServiceUnavailable())


def install_error_handlers(app: FastAPI) -> None:
    """Render every error as problem+json. Unexpected ones are handled by the logging middleware."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)

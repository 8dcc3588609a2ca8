import json
import time
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Environment, Settings
from app.core.errors import MAX_LISTED_ERRORS, PROBLEM_JSON
from app.db.engine import create_engine
from app.db.session import SessionDep, create_sessionmaker, get_sessionmaker
from app.main import create_app


async def test_unknown_route_is_a_404_problem(client: AsyncClient) -> None:
    response = await client.get("/api/v1/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
        "code": "not_found",
    }


async def test_wrong_method_is_a_405_problem(client: AsyncClient) -> None:
    response = await client.put("/api/v1/health/live")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_undecodable_body_is_a_400_problem(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        content=b"\xff\xfe{not text",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "malformed_request"


async def test_unexpected_error_is_a_500_that_leaks_nothing(
    capsys: pytest.CaptureFixture[str], app: FastAPI
) -> None:
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("secret internals: password=hunter2")

    app.include_router(router)
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/boom", headers={"X-Request-ID": "trace-500"})

    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["x-request-id"] == "trace-500"
    assert response.json()["code"] == "internal_error"
    assert "secret" not in response.text
    assert "hunter2" not in response.text
    # The server side does log it, with the request id, for whoever is on call.
    logged = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    errors = [entry for entry in logged if entry["level"] == "ERROR"]
    assert errors
    assert errors[0]["request_id"] == "trace-500"
    assert "RuntimeError" in errors[0]["exc_info"]


async def test_openapi_documents_problem_responses(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert "401" in login
    assert PROBLEM_JSON in login["401"]["content"]


async def test_a_body_of_many_unknown_keys_costs_little_to_refuse(client: AsyncClient) -> None:
    """65,536 unknown keys (840 KB) used to take seconds and answer 5.9 MB."""
    body = json.dumps({f"k{index}": 0 for index in range(65_536)}).encode()
    started = time.perf_counter()
    response = await client.post(
        "/api/v1/auth/refresh", content=body, headers={"Content-Type": "application/json"}
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert len(response.content) < 8 * 1024
    problem = response.json()
    assert problem["errors"] == [
        {
            "loc": ["body"],
            "msg": "The object has 65536 members; this one takes at most 1",
            "type": "too_many_members",
        }
    ]
    assert problem["error_count"] == 1
    assert elapsed < 1.0  # it took 3 s and more


async def test_a_422_lists_the_first_errors_and_counts_them_all(client: AsyncClient) -> None:
    """Few enough unknown keys to be reported one by one, but more errors than are listed."""
    body = {f"unknown{index}": 0 for index in range(23)}
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == MAX_LISTED_ERRORS
    assert problem["error_count"] == 25  # 23 unknown keys, email and password missing
    assert {
        "loc": ["body", "unknown0"],
        "msg": "Extra inputs are not permitted",
        "type": "extra_forbidden",
    } in problem["errors"]


async def test_a_huge_key_is_not_echoed_whole(client: AsyncClient) -> None:
    key = "k" * 500_000
    response = await client.post("/api/v1/auth/refresh", json={key: 0, "refresh_token": "t"})
    assert response.status_code == 422
    assert len(response.content) < 2 * 1024
    locations = [error["loc"] for error in response.json()["errors"]]
    assert locations == [["body", "k" * 64 + "..."]]


SECRET_EMAIL = "bound-value@example.com"


@pytest.mark.parametrize(
    ("environment", "shown"), [("local", True), ("test", False), ("production", False)]
)
async def test_a_database_bug_logs_no_bound_value_outside_local(
    capsys: pytest.CaptureFixture[str],
    migrated_database: str,
    environment: str,
    shown: bool,
) -> None:
    """A failing statement is logged with its SQL; its values (emails, hashes) only locally."""
    production_safe: dict[str, Any] = {"SECRET_KEY": "p" * 40, "ALLOWED_HOSTS": ["testserver"]}
    settings = Settings(_env_file=None, ENVIRONMENT=Environment(environment), **production_safe)
    engine = create_engine(settings, url=migrated_database)
    factory = create_sessionmaker(engine)

    async def engine_sessionmaker() -> async_sessionmaker[AsyncSession]:
        return factory

    router = APIRouter()

    @router.post("/bug")
    async def bug(session: SessionDep) -> dict[str, str]:
        # Every other NOT NULL column is missing: an IntegrityError, a bug rather than an outage.
        await session.execute(
            text("INSERT INTO users (email) VALUES (:email)"), {"email": SECRET_EMAIL}
        )
        return {}

    # An app of its own, on an engine made with these settings, outside the test's transaction.
    app = create_app()
    app.include_router(router)
    app.dependency_overrides[get_sessionmaker] = engine_sessionmaker
    try:
        async with AsyncClient(
            transport=ASGITransport(app=app), base_url="http://testserver"
        ) as client:
            response = await client.post("/bug")
    finally:
        await engine.dispose()
    assert response.status_code == 500
    assert SECRET_EMAIL not in response.text
    logged = capsys.readouterr().out
    assert "IntegrityError" in logged
    assert "INSERT INTO users" in logged
    assert (SECRET_EMAIL in logged) is shown

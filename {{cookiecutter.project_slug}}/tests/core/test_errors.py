import json

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient

from app.core.errors import PROBLEM_JSON


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

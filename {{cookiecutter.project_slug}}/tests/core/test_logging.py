import json

import pytest
from httpx import AsyncClient

from app.users.models import User
from tests.factories import DEFAULT_PASSWORD


def _log_lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


# capsys comes first so the app's log handler is created on the captured stdout.
async def test_request_id_is_echoed_and_logged(
    capsys: pytest.CaptureFixture[str], client: AsyncClient
) -> None:
    response = await client.get("/api/v1/health/live", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    lines = _log_lines(capsys.readouterr().out)
    request_lines = [line for line in lines if line["message"] == "request"]
    assert request_lines
    assert request_lines[-1]["request_id"] == "abc-123"
    assert request_lines[-1]["status"] == 200
    assert request_lines[-1]["path"] == "/api/v1/health/live"


@pytest.mark.parametrize(
    "supplied", [None, b"", b"x" * 129, b"bad id with spaces", b"\xe9t\xe9", b"a\x00b"]
)
async def test_missing_or_unsafe_request_id_is_replaced(
    client: AsyncClient, supplied: bytes | None
) -> None:
    headers = {} if supplied is None else {b"X-Request-ID": supplied}
    response = await client.get("/api/v1/health/live", headers=headers)
    generated = response.headers["x-request-id"]
    assert generated.encode() != supplied
    assert len(generated) == 32
    assert int(generated, 16) >= 0  # hex digits, like a UUID's


async def test_generated_request_ids_differ(client: AsyncClient) -> None:
    ids = {(await client.get("/api/v1/health/live")).headers["x-request-id"] for _ in range(200)}
    assert len(ids) == 200


async def test_every_log_line_is_json_and_carries_no_secret(
    capsys: pytest.CaptureFixture[str], client: AsyncClient, user: User
) -> None:
    response = await client.post(
        "/api/v1/auth/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    tokens = response.json()
    await client.post("/api/v1/auth/login", data={"username": user.email, "password": "wrong!"})
    out = capsys.readouterr().out
    lines = _log_lines(out)
    assert len(lines) >= 2
    assert len(lines) == len([line for line in out.splitlines() if line])
    for secret in (DEFAULT_PASSWORD, "wrong!", tokens["access_token"], tokens["refresh_token"]):
        assert secret not in out

"""The real thing: `app.main:app` served by uvicorn on a loopback port, as `make run` does."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import SERVED_BODY_LIMIT


def test_served_app_registers_logs_in_and_logs_as_json(server: tuple[str, Path]) -> None:
    base_url, log_path = server
    with httpx.Client(base_url=f"{base_url}/api/v1") as client:
        assert client.get("/health/ready").status_code == 200
        created = client.post(
            "/auth/register", json={"email": "live@example.com", "password": "long enough"}
        )
        assert created.status_code == 201
        tokens = client.post(
            "/auth/login", data={"username": "live@example.com", "password": "long enough"}
        ).json()
        me = client.get(
            "/users/me",
            headers={
                "Authorization": f"Bearer {tokens['access_token']}",
                "X-Request-ID": "served-1",
            },
        )
        assert me.status_code == 200
        assert me.headers["x-request-id"] == "served-1"
        bad = client.post(
            "/auth/register", content=b"{", headers={"Content-Type": "application/json"}
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"

    time.sleep(0.2)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, uvicorn's included
    # uvicorn's own lines come without their terminal-coloured copy.
    assert all("\x1b" not in str(value) for record in records for value in record.values())
    served = [r for r in records if r.get("message") == "request" and r["request_id"] == "served-1"]
    assert served
    assert served[0]["path"] == "/api/v1/users/me"
    assert served[0]["status"] == 200
    text = log_path.read_text()
    assert "long enough" not in text
    assert tokens["access_token"] not in text


def _chunks(count: int, size: int = 1024) -> Iterator[bytes]:
    for _ in range(count):
        yield b"x" * size


def test_served_app_refuses_large_bodies_chunked_or_not(server: tuple[str, Path]) -> None:
    base_url, _ = server
    url = f"{base_url}/api/v1/auth/register"
    headers = {"Content-Type": "application/json"}
    with httpx.Client() as client:
        chunked = client.post(url, content=_chunks(8), headers=headers)
        sized = client.post(url, content=b"x" * (SERVED_BODY_LIMIT + 1), headers=headers)
        fits = client.post(url, content=_chunks(2), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    for response in (chunked, sized):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "payload_too_large"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert fits.status_code == 422  # read in full, and not JSON

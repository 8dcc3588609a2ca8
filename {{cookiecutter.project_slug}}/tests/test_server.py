"""The real thing: `app.main:app` served by uvicorn on a loopback port, as `make run` does."""

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.conftest import SERVED_BODY_LIMIT, Served


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


def test_many_unknown_keys_cost_little_and_the_server_stays_live(
    production_cost_server: Served,
) -> None:
    """65,536 unknown keys (840 KB, under the default body limit) before authentication: this
    took 3 s of the event loop per request and answered 5.9 MB; /health/live waited as long."""
    body = json.dumps({f"k{index}": 0 for index in range(65_536)}).encode()
    answers: list[tuple[int, int, float]] = []

    def send_them(base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for _ in range(5):
                started = time.perf_counter()
                response = client.post(
                    "/api/v1/auth/refresh",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                answers.append(
                    (response.status_code, len(response.content), time.perf_counter() - started)
                )

    # A server with the default body limit, one worker: /health/live waits if the loop does.
    served = production_cost_server
    sender = threading.Thread(target=send_them, args=(served.base_url,))
    waits: list[float] = []
    with httpx.Client(base_url=served.base_url, timeout=30) as client:
        sender.start()
        while sender.is_alive():
            started = time.perf_counter()
            assert client.get("/api/v1/health/live").status_code == 200
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)
    sender.join()
    assert [status for status, _, _ in answers] == [422] * 5
    assert max(size for _, size, _ in answers) < 8 * 1024
    assert max(elapsed for _, _, elapsed in answers) < 1.0
    assert waits
    assert max(waits) < 1.0

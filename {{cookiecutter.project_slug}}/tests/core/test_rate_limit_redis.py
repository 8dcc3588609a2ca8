"""Rate limits kept in Redis, for real: shared by two server processes, and through an outage.

Needs a Redis server: TEST_REDIS_URL (default redis://127.0.0.1:6379/15). Every test counts under
a key prefix of its own, so parallel workers and repeated runs never see each other's hits. The
outage test starts (and stops) a redis-server of its own on a free port.
"""

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from app.core.config import Settings, describe_error
from app.core.errors import PROBLEM_JSON
from tests.conftest import client_at
from tests.servers import free_port, serve_together

logger = logging.getLogger(__name__)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ME = "/api/v1/users/me"


def _redis_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 6379), 1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_env() -> dict[str, str]:
    """Settings for Redis-backed limits under a key prefix of this test's own."""
    if not _redis_answers(TEST_REDIS_URL):
        pytest.skip(f"Redis is not reachable at {TEST_REDIS_URL} (set TEST_REDIS_URL)")
    return {
        "RATE_LIMIT_STORAGE": "redis",
        "REDIS_URL": TEST_REDIS_URL,
        "RATE_LIMIT_KEY_PREFIX": f"test-{uuid.uuid4().hex}",
    }


def _log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "url",
    [
        "127.0.0.1:6379",
        "http://127.0.0.1:6379",
        "memory://",
        "redis://127.0.0.1:notaport/0",
        "redis://127.0.0.1:99999/0",
        "redis:///0",
    ],
)
def test_redis_url_must_be_a_redis_url(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(REDIS_URL=url)
    assert describe_error(caught.value) == (
        "invalid configuration: REDIS_URL: must be a Redis URL such as redis://127.0.0.1:6379/0"
    )


async def test_limits_and_retry_after_work_in_redis(
    redis_env: dict[str, str], app_with: Callable[..., FastAPI]
) -> None:
    app = app_with(**redis_env, RATE_LIMIT_LOGIN_USERNAME="2/minute")
    # The lifespan closes the Redis connections at the end.
    async with app.router.lifespan_context(app), client_at(app) as client:
        form = {"username": "ada@example.com", "password": "wrong guess"}
        statuses = [(await client.post("/api/v1/auth/login", data=form)).status_code for _ in "abc"]
        ready = await client.get("/api/v1/health/ready")
    assert statuses == [401, 401, 429]
    assert ready.json() == {"status": "ok"}


def test_two_server_processes_share_the_limit(
    redis_env: dict[str, str], tmp_path: Path, empty_database: str
) -> None:
    env = {**redis_env, "RATE_LIMIT_DEFAULT": "10/minute"}
    with serve_together(
        empty_database, (tmp_path / "one.log", env), (tmp_path / "two.log", env)
    ) as (served_one, served_two):
        one, two = served_one.base_url, served_two.base_url
        # Each request claims another address: with no trusted proxy, nobody is believed.
        responses = [
            httpx.get(f"{(one, two)[n % 2]}{ME}", headers={"X-Forwarded-For": f"198.51.100.{n}"})
            for n in range(30)
        ]
    statuses = [response.status_code for response in responses]
    allowed = sum(status == 401 for status in statuses)
    limited = sum(status == 429 for status in statuses)
    logger.info("two servers, one Redis: sent=30 allowed=%d rate_limited=%d", allowed, limited)
    assert (allowed, limited) == (10, 20), statuses
    assert statuses[:10] == [401] * 10  # both servers served, then both refused
    assert all(int(r.headers["retry-after"]) >= 1 for r in responses[10:])


@contextmanager
def _redis_server(port: int, workdir: Path) -> Iterator[None]:
    executable = shutil.which("redis-server")
    assert executable is not None
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _redis_answers(f"redis://127.0.0.1:{port}"):
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer in time"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def _wait_until_ready(base_url: str) -> None:
    deadline = time.monotonic() + 10
    while httpx.get(f"{base_url}/api/v1/health/ready").json() != {"status": "ok"}:
        assert time.monotonic() < deadline, f"{base_url} did not see Redis come back"
        time.sleep(0.1)


def test_a_redis_outage_fails_open_or_closed_as_configured_and_recovers(
    tmp_path: Path, empty_database: str
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (needed to stop and restart a Redis)")
    port = free_port()
    limits = {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "RATE_LIMIT_STORAGE": "redis"}
    env = {**limits, "RATE_LIMIT_DEFAULT": "3/minute"}
    open_log, closed_log = tmp_path / "open.log", tmp_path / "closed.log"
    with serve_together(
        empty_database, (open_log, env), (closed_log, {**env, "RATE_LIMIT_FAIL_OPEN": "false"})
    ) as (served_open, served_closed):
        fail_open, fail_closed = served_open.base_url, served_closed.base_url
        with _redis_server(port, tmp_path):
            up = [httpx.get(f"{base}{ME}").status_code for base in (fail_open, fail_closed)]
        # Redis is gone; the servers are not.
        down_open = [httpx.get(f"{fail_open}{ME}").status_code for _ in range(6)]
        down_ready = httpx.get(f"{fail_open}/api/v1/health/ready")
        down_closed = httpx.get(f"{fail_closed}{ME}")
        closed_ready = httpx.get(f"{fail_closed}/api/v1/health/ready")
        with _redis_server(port, tmp_path):
            # A failed storage is left alone for a moment; readiness says when it is back.
            _wait_until_ready(fail_open)
            _wait_until_ready(fail_closed)
            back = [httpx.get(f"{fail_open}{ME}").status_code for _ in range(5)]
            back_closed = httpx.get(f"{fail_closed}{ME}").status_code
    logger.info(
        "outage: up=%s open=%s ready=%s closed=%s closed_ready=%s back=%s closed_back=%s",
        up,
        down_open,
        down_ready.json(),
        down_closed.status_code,
        closed_ready.status_code,
        back,
        back_closed,
    )
    assert up == [401, 401]
    # Fail open: every request answered as if unlimited, a 401 here, never a 500.
    assert down_open == [401] * 6
    assert down_ready.status_code == 200
    assert down_ready.json() == {"status": "degraded"}
    warnings = [r for r in _log(open_log) if r["level"] == "WARNING"]
    assert [r["message"] for r in warnings] == [
        "rate limit storage unavailable (ConnectionError); letting requests through until it "
        "is back"
    ]
    # Fail closed: 503 problem+json, for the API and for readiness.
    for response in (down_closed, closed_ready):
        assert response.status_code == 503
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "rate_limit_unavailable"
        assert response.headers["retry-after"] == "5"
    # Redis back: limits apply again (a fresh Redis holds no earlier hits).
    assert back == [401, 401, 401, 429, 429]
    assert back_closed == 429  # both servers count in the same Redis
    assert "rate limit storage is reachable again" in [r["message"] for r in _log(open_log)]

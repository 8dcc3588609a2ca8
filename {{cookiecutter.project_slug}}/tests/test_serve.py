"""The production command, `serve` (app/serve.py), which `make serve` and the container image
run: started as a real process, probed and stopped the way a container platform does."""

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import NullPool, select
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.errors import PROBLEM_JSON
from app.serve import per_process_limits_refusal, server_options
from app.users.models import User
from tests import PROJECT_DIR, databases
from tests.servers import SERVE, Starting, free_port, serve, start, wait_until_live

logger = logging.getLogger(__name__)

LIVE = "/api/v1/health/live"
# Shorter than the default, so a server that hangs on its way out fails the test sooner.
GRACEFUL_SHUTDOWN_SECONDS = 3


def _environment(migrated_database: str, port: int, workers: int) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": migrated_database,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GRACEFUL_SHUTDOWN_SECONDS": str(GRACEFUL_SHUTDOWN_SECONDS),
        "PYTHONUNBUFFERED": "1",
    }


@contextmanager
def started(migrated_database: str, tmp_path: Path, *, workers: int = 1) -> Iterator[Starting]:
    """`serve`, answering on its liveness probe; killed afterwards if a test left it running."""
    env = {"GRACEFUL_SHUTDOWN_SECONDS": str(GRACEFUL_SHUTDOWN_SECONDS)}
    starting = start(migrated_database, tmp_path / "serve.log", workers=workers, env=env)
    try:
        wait_until_live(starting)
        yield starting
    finally:
        if starting.process.poll() is None:
            starting.process.kill()
            starting.process.wait()


def test_serve_answers_the_liveness_probe(migrated_database: str, tmp_path: Path) -> None:
    with started(migrated_database, tmp_path) as server:
        response = httpx.get(f"{server.server.base_url}{LIVE}", timeout=5)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    # The access log is off: the app's own request line (with its request id) is the only one.
    assert '"GET /api/v1/health/live' not in server.server.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_exits_0_after_a_graceful_stop_on_sigterm(
    migrated_database: str, tmp_path: Path, workers: int
) -> None:
    with started(migrated_database, tmp_path, workers=workers) as server:
        server.process.send_signal(signal.SIGTERM)
        try:
            status = server.process.wait(timeout=GRACEFUL_SHUTDOWN_SECONDS + 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve did not stop on SIGTERM:\n{server.server.log()}")
    log = server.server.log()
    assert status == 0, log
    assert "Traceback" not in log
    assert "Application shutdown complete" in log
    if workers > 1:
        assert "Started parent process" in log
        assert log.count("Finished server process") == workers


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY: Input should be greater than or equal to 1"),
        ("WEB_CONCURRENCY", "many", "WEB_CONCURRENCY: Input should be a valid integer"),
        ("GRACEFUL_SHUTDOWN_SECONDS", "-1", "GRACEFUL_SHUTDOWN_SECONDS: Input should be greater"),
        ("PORT", "70000", "PORT: Input should be less than or equal to 65535"),
        ("HOST", "example.com", "HOST: value is not a valid IPv4 or IPv6 address"),
    ],
)
def test_serve_refuses_a_bad_setting_in_one_line(
    migrated_database: str, name: str, value: str, message: str
) -> None:
    environment = {**_environment(migrated_database, free_port(), 1), name: value}
    result = subprocess.run(
        [SERVE], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("invalid configuration: "), result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


# Production as it must be configured, with limits in each process's memory.
PRODUCTION_IN_MEMORY = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "s" * 64,
    "ALLOWED_HOSTS": "api.example.com",
    "RATE_LIMIT_STORAGE": "memory",  # the only storage of a project without Redis
}


def test_serve_refuses_several_workers_with_per_process_limits_in_production(
    migrated_database: str,
) -> None:
    environment = {**_environment(migrated_database, free_port(), 2), **PRODUCTION_IN_MEMORY}
    result = subprocess.run(
        [SERVE], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("invalid configuration: WEB_CONCURRENCY: 2 workers"), lines
    assert "RATE_LIMITS_PER_PROCESS=true" in lines[0]


def test_per_process_limits_are_refused_only_where_they_would_mislead() -> None:
    production: dict[str, Any] = {
        key: value for key, value in PRODUCTION_IN_MEMORY.items() if key in Settings.model_fields
    }
    refused = Settings(**production, WEB_CONCURRENCY=4)
    assert per_process_limits_refusal(refused) is not None
    allowed = [
        Settings(**production, WEB_CONCURRENCY=1),
        Settings(**production, WEB_CONCURRENCY=4, RATE_LIMITS_PER_PROCESS=True),
        Settings(**{**production, "ENVIRONMENT": "local"}, WEB_CONCURRENCY=4),
    ]
    if "RATE_LIMIT_STORAGE" in Settings.model_fields:  # shared in Redis: nothing to refuse
        allowed.append(Settings(**{**production, "RATE_LIMIT_STORAGE": "redis"}, WEB_CONCURRENCY=4))
    for settings in allowed:
        assert per_process_limits_refusal(settings) is None, settings


def test_server_options_follow_the_settings() -> None:
    settings = Settings(
        HOST=IPv4Address("0.0.0.0"),  # what a container listens on
        PORT=9000,
        WEB_CONCURRENCY=3,
        GRACEFUL_SHUTDOWN_SECONDS=20,
    )
    assert server_options(settings) == {
        "host": "0.0.0.0",
        "port": 9000,
        "workers": 3,
        "timeout_graceful_shutdown": 20,
        "proxy_headers": False,  # TRUSTED_PROXIES decides, in the app
        "access_log": False,
    }


def test_workers_default_to_one_per_usable_cpu() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = Settings().WEB_CONCURRENCY
    assert workers == expected


# The drain test: registrations hash their password one at a time at a real (small) cost, so
# 50 of them sent at once are still queued in the server when SIGTERM comes.
DRAINED = 50
# Every registration must finish inside it. About 5 s here on a quiet machine; far more on a
# loaded one, where the hashing threads (below the event loop's priority) get little CPU.
DRAIN_GRACE_SECONDS = 120
DRAIN_ENV = {
    "GRACEFUL_SHUTDOWN_SECONDS": str(DRAIN_GRACE_SECONDS),
    "PASSWORD_HASH_CONCURRENCY": "1",
    "PASSWORD_HASH_TIME_COST": "2",
    "PASSWORD_HASH_MEMORY_KIB": "16384",
}
SHUTDOWN_LINE = "shutdown: database pool and rate limit storage closed"


def _refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        try:
            probe.connect(("127.0.0.1", port))
        # Refused, or reset in the handshake while the listening socket closes: not accepted.
        except (ConnectionRefusedError, ConnectionResetError):
            return True
    return False


async def _registered_emails(database_url: str) -> set[str]:
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return set((await connection.execute(select(User.email))).scalars())
    finally:
        await engine.dispose()


@pytest.fixture
def drained_database() -> Iterator[str]:
    """A migrated database of the drain test's own: its 50 accounts stay out of the others'."""
    with databases.scratch_database(databases.new_database_url("drain"), migrated=True) as url:
        yield url


async def test_sigterm_drains_the_requests_in_flight_then_exits_0(
    drained_database: str, tmp_path: Path
) -> None:
    starting = start(drained_database, tmp_path / "serve.log", workers=1, env=DRAIN_ENV)
    server, process = starting.server, starting.process
    port = int(server.base_url.rsplit(":", 1)[1])
    emails = [f"drain{n}@example.com" for n in range(DRAINED)]
    sent = 0
    all_sent = asyncio.Event()

    async def trace(event: str, info: object) -> None:
        nonlocal sent
        if event == "http11.send_request_body.complete":
            sent += 1
            if sent == DRAINED:
                all_sent.set()

    done_before_sigterm = 0
    sigterm_sent = False

    async def register(client: httpx.AsyncClient, email: str) -> int:
        nonlocal done_before_sigterm
        response = await client.post(
            "/api/v1/auth/register",
            json={"email": email, "password": "a long enough password"},
            extensions={"trace": trace},
        )
        if not sigterm_sent:
            done_before_sigterm += 1
        return response.status_code

    try:
        wait_until_live(starting)
        limits = httpx.Limits(max_connections=DRAINED + 1)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=60) as client:
            requests = [asyncio.create_task(register(client, email)) for email in emails]
            await asyncio.wait_for(all_sent.wait(), timeout=30)
            # The server accepts connections in order: once a later one is answered, the 50
            # registrations were accepted and read before it.
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as probe:
                assert (await probe.get(LIVE)).status_code == 200
            process.send_signal(signal.SIGTERM)
            sigterm_sent = True
            in_flight = DRAINED - done_before_sigterm
            # While those drain, the listening socket is closed: a new client is refused.
            refused = False
            while not refused and not all(request.done() for request in requests):
                refused = await asyncio.to_thread(_refuses_connections, port)
                await asyncio.sleep(0.01)
            statuses = await asyncio.gather(*requests)
        status = await asyncio.to_thread(process.wait, DRAIN_GRACE_SECONDS + 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = server.log()
    logger.info("in flight at SIGTERM: %d, completed 201: %d", in_flight, statuses.count(201))
    # Most were still queued behind the one-at-a-time hashing when the signal came.
    assert in_flight >= DRAINED // 2, (in_flight, log)
    assert statuses == [201] * DRAINED, (statuses, log)
    assert refused, "a new connection was accepted after SIGTERM, while requests drained"
    assert await _registered_emails(drained_database) == set(emails)
    assert status == 0, log
    assert "Traceback" not in log
    # The lifespan ran to its end: the pool and the rate limit storage were closed.
    assert SHUTDOWN_LINE in log
    assert "Application shutdown complete" in log


READY = "/api/v1/health/ready"
READY_DEADLINE = 30.0


def test_serve_starts_without_its_database_and_is_ready_once_it_is_reachable(
    migrated_database: str, tmp_path: Path
) -> None:
    with databases.unreached_database(migrated_database) as (url, reach):
        env = {"DATABASE_CONNECT_TIMEOUT": "2", "DATABASE_POOL_TIMEOUT": "5"}
        with serve(url, tmp_path / "serve.log", env=env) as server:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                live = client.get(LIVE)
                unready = client.get(READY)
                reach()
                deadline = time.monotonic() + READY_DEADLINE
                ready = client.get(READY)
                while ready.status_code != 200 and time.monotonic() < deadline:
                    time.sleep(0.2)
                    ready = client.get(READY)
            log = server.log()
    assert live.status_code == 200, live.text
    assert live.json() == {"status": "ok"}
    assert unready.status_code == 503, unready.text
    assert unready.headers["content-type"] == PROBLEM_JSON
    assert unready.json()["code"] == "database_unavailable"
    assert ready.status_code == 200, (ready.text, log)
    assert ready.json() == {"status": "ok"}
    assert "Traceback" not in log

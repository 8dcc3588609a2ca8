"""Prometheus metrics of real requests, read back through prometheus-client's own parser.

Each test builds an app of its own (`app_with`), so it counts in a registry of its own and its
figures are exact. The multiprocess side (the files `serve` reads, dead workers) runs real
processes here; `serve` itself is scraped in tests/test_serve_metrics.py.
"""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import prometheus_client.values
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, describe_error
from app.core.metrics import (
    OTHER_METHOD,
    UNMATCHED,
    Metrics,
    MetricsMiddleware,
    RouteTemplates,
    drop_dead_workers,
    workers_registry,
)
from app.users.models import User
from tests import PROJECT_DIR, databases
from tests.factories import DEFAULT_PASSWORD

AppWith = Callable[..., FastAPI]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

USERS = "/api/v1/users"
USER = "/api/v1/users/{user_id}"
LIVE = "/api/v1/health/live"


def parse(exposition: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def scrape(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    """Requests answered: the latency histogram's count."""
    labels = {"method": method, "route": route, "status": str(status)}
    return value(samples, "http_request_duration_seconds_count", **labels)


def metrics_of(app: FastAPI) -> Metrics:
    metrics: Metrics = app.state.metrics
    return metrics


def client_of(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver")


async def test_requests_are_counted_by_method_route_template_and_status(
    app_with: AppWith, admin: User, admin_headers: dict[str, str]
) -> None:
    app = app_with()
    async with client_of(app) as client:
        for _ in range(2):
            assert (await client.get(f"{USERS}/{admin.id}", headers=admin_headers)).is_success
        missing = await client.get(f"{USERS}/{uuid.uuid4()}", headers=admin_headers)
        invalid = await client.get(f"{USERS}/not-a-uuid", headers=admin_headers)
        unknown = [await client.get(f"/nowhere/{n}") for n in range(3)]
        unknown.append(await client.get("/api/v1/not-a-route"))
        wrong_method = await client.put(LIVE)
        odd_method = await client.request("PURGE", LIVE)
        assert (await client.get(LIVE)).status_code == 200
        # A plain Starlette route (no FastAPI route object in the scope) keeps its template too.
        assert (await client.get("/openapi.json")).status_code == 200
    assert (missing.status_code, invalid.status_code) == (404, 422)
    assert {response.status_code for response in unknown} == {404}
    assert (wrong_method.status_code, odd_method.status_code) == (405, 405)

    samples = scrape(metrics_of(app).registry)
    assert requests(samples, "GET", USER, 200) == 2
    assert requests(samples, "GET", USER, 404) == 1
    assert requests(samples, "GET", USER, 422) == 1
    assert requests(samples, "GET", LIVE, 200) == 1
    assert requests(samples, "PUT", LIVE, 405) == 1
    assert requests(samples, OTHER_METHOD, LIVE, 405) == 1
    # Four different unknown paths: one series.
    assert requests(samples, "GET", UNMATCHED, 404) == 4
    count = "http_request_duration_seconds_count"
    routes = {dict(labels)["route"] for name, labels in samples if name == count}
    assert routes == {USER, LIVE, UNMATCHED, "/openapi.json"}
    # No raw path (an id, an unknown path) ever becomes a label.
    exposition = generate_latest(metrics_of(app).registry).decode()
    assert str(admin.id) not in exposition
    assert "nowhere" not in exposition
    assert "not-a-uuid" not in exposition
    # Cumulative buckets, the last holding every request.
    labels = {"method": "GET", "route": USER, "status": "200"}
    assert value(samples, "http_request_duration_seconds_bucket", **labels, le="+Inf") == 2
    assert value(samples, "http_request_duration_seconds_bucket", **labels, le="0.001") <= 2
    assert 0 < value(samples, "http_request_duration_seconds_sum", **labels) < 10
    assert value(samples, "http_requests_in_flight") == 0


async def test_requests_in_flight_count_up_and_down(app_with: AppWith) -> None:
    app = app_with()
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow() -> dict[str, str]:
        entered.set()
        await release.wait()
        return {"status": "done"}

    async with client_of(app) as client:
        assert (await client.get(LIVE)).status_code == 200
        # Added after the app has served: the route table is read again for it.
        app.add_api_route("/test/slow", slow)
        request = asyncio.create_task(client.get("/test/slow"))
        await asyncio.wait_for(entered.wait(), timeout=10)
        during = scrape(metrics_of(app).registry)
        release.set()
        assert (await request).status_code == 200
    after = scrape(metrics_of(app).registry)
    assert value(during, "http_requests_in_flight") == 1
    assert requests(during, "GET", "/test/slow", 200) == 0
    assert value(after, "http_requests_in_flight") == 0
    assert requests(after, "GET", "/test/slow", 200) == 1


async def test_an_unexpected_error_counts_as_a_500_of_its_route(app_with: AppWith) -> None:
    app = app_with()

    async def broken(item: int) -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/test/broken/{item}", broken)
    async with client_of(app) as client:
        response = await client.get("/test/broken/7")
    assert response.status_code == 500
    samples = scrape(metrics_of(app).registry)
    assert requests(samples, "GET", "/test/broken/{item}", 500) == 1
    assert value(samples, "http_requests_in_flight") == 0


POOL_SETTINGS, POOL_SIZE = databases.METRICS_POOL_SETTINGS, databases.METRICS_POOL_SIZE


async def test_pool_gauges_follow_the_app_pool(app_with: AppWith) -> None:
    """The pool the lifespan opens, on the real database: its size from the start, then the
    connections held and the overflow, as the end of each request finds them."""
    app = app_with(**POOL_SETTINGS)
    held = POOL_SIZE + 1  # one past the pool: an overflow connection
    async with app.router.lifespan_context(app), client_of(app) as client:
        at_start = scrape(metrics_of(app).registry)
        # Read sessions: no BEGIN, so SQLite lets them all hold a connection at once.
        factory: async_sessionmaker[AsyncSession] = app.state.read_sessionmaker
        async with AsyncExitStack() as sessions:
            for _ in range(held):
                session = await sessions.enter_async_context(factory())
                await session.connection()
            assert (await client.get(LIVE)).status_code == 200
            busy = scrape(metrics_of(app).registry)
        assert (await client.get(LIVE)).status_code == 200
        idle = scrape(metrics_of(app).registry)
    assert value(at_start, "db_pool_size") == POOL_SIZE
    assert value(at_start, "db_pool_checked_out") == 0
    assert value(busy, "db_pool_checked_out") == held
    assert value(busy, "db_pool_overflow") == 1
    assert value(idle, "db_pool_checked_out") == 0
    assert value(idle, "db_pool_overflow") == 0
    assert value(idle, "db_pool_size") == POOL_SIZE


async def test_rate_limit_refusals_are_counted_by_limit(app_with: AppWith) -> None:
    app = app_with(RATE_LIMIT_REGISTER="1/minute", RATE_LIMIT_LOGIN="2/minute")
    body = {"email": "limited@example.com", "password": DEFAULT_PASSWORD}
    login = {"username": "limited@example.com", "password": DEFAULT_PASSWORD}
    async with client_of(app) as client:
        registered = [(await client.post("/api/v1/auth/register", json=body)).status_code]
        registered.append((await client.post("/api/v1/auth/register", json=body)).status_code)
        logins = [
            (await client.post("/api/v1/auth/login", data=login)).status_code for _ in range(3)
        ]
    assert registered == [201, 429]
    assert logins == [200, 200, 429]
    samples = scrape(metrics_of(app).registry)
    assert value(samples, "rate_limit_rejections_total", limit="register") == 1
    assert value(samples, "rate_limit_rejections_total", limit="login") == 1
    assert requests(samples, "POST", "/api/v1/auth/register", 429) == 1
    assert requests(samples, "POST", "/api/v1/auth/login", 429) == 1


def _break_values(monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> None:
    """Every write to every metric raises: counters, histograms and gauges alike."""

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the collector is broken")

    for name in ("inc", "set"):
        monkeypatch.setattr(prometheus_client.values.MutexValue, name, broken)


def _break_labels(monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ValueError("no such labels")

    monkeypatch.setattr(metrics_of(app).latency, "labels", broken)


def _break_routes(monkeypatch: pytest.MonkeyPatch, app: FastAPI) -> None:
    def broken(self: RouteTemplates, scope: object) -> str:
        raise KeyError("route")

    monkeypatch.setattr(RouteTemplates, "of", broken)


@pytest.mark.parametrize("breakage", [_break_values, _break_labels, _break_routes])
async def test_a_broken_collector_fails_no_request(
    app_with: AppWith,
    admin: User,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    breakage: Callable[[pytest.MonkeyPatch, FastAPI], None],
) -> None:
    app = app_with(RATE_LIMIT_REGISTER="1/minute")
    body = {"email": "broken@example.com", "password": DEFAULT_PASSWORD}
    with monkeypatch.context() as patch:
        breakage(patch, app)
        async with client_of(app) as client:
            statuses = [
                (await client.get(LIVE)).status_code,
                (await client.get(f"{USERS}/{admin.id}", headers=admin_headers)).status_code,
                (await client.get("/nowhere")).status_code,
                (await client.post("/api/v1/auth/register", json=body)).status_code,
                (await client.post("/api/v1/auth/register", json=body)).status_code,
            ]
    assert statuses == [200, 200, 404, 201, 429]
    # Logged (the app's JSON lines on stdout), once: not on every request.
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    warnings = [line for line in lines if line["logger"] == "app.core.metrics"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "WARNING"
    assert "requests are served regardless" in warnings[0]["message"]
    # Mended, the same app counts again, and nothing was left in flight.
    async with client_of(app) as client:
        assert (await client.get(LIVE)).status_code == 200
    samples = scrape(metrics_of(app).registry)
    assert requests(samples, "GET", LIVE, 200) >= 1
    assert value(samples, "http_requests_in_flight") == 0


async def test_metrics_can_be_switched_off(app_with: AppWith) -> None:
    app = app_with(METRICS_ENABLED=False, RATE_LIMIT_REGISTER="1/minute")
    body = {"email": "unmeasured@example.com", "password": DEFAULT_PASSWORD}
    async with client_of(app) as client:
        assert (await client.get(LIVE)).status_code == 200
        statuses = [
            (await client.post("/api/v1/auth/register", json=body)).status_code for _ in range(2)
        ]
    assert statuses == [201, 429]
    assert app.state.metrics is None
    middleware: list[object] = [entry.cls for entry in app.user_middleware]
    assert MetricsMiddleware not in middleware


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"PORT": 9000, "METRICS_PORT": 9000},
            "invalid configuration: METRICS_PORT must differ from PORT (9000)",
        ),
        ({"METRICS_PORT": 0}, "METRICS_PORT: Input should be greater than or equal to 1"),
        ({"METRICS_PORT": 65536}, "METRICS_PORT: Input should be less than or equal to 65535"),
        ({"METRICS_HOST": "metrics.local"}, "METRICS_HOST: value is not a valid IPv4 or IPv6"),
    ],
)
def test_a_bad_metrics_setting_is_one_clear_line(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    described = describe_error(caught.value)
    assert message in described
    assert "\n" not in described


def test_metrics_listen_where_the_api_does_unless_told() -> None:
    everywhere, loopback = IPv4Address("0.0.0.0"), IPv4Address("127.0.0.1")
    assert Settings(HOST=everywhere).metrics_host == "0.0.0.0"
    assert Settings(HOST=everywhere, METRICS_HOST=loopback).metrics_host == "127.0.0.1"
    # Off, the port is not checked: nothing listens on it.
    assert not Settings(PORT=9000, METRICS_PORT=9000, METRICS_ENABLED=False).METRICS_ENABLED


# --- The files of several processes, as `serve` reads them ------------------------------------

# A process that records what a worker would, into PROMETHEUS_MULTIPROC_DIR: `requests` answered
# on /api/v1/health/live, and one request still in flight. With `wait`, it stays alive until its
# standard input closes.
RECORDER = """
import sys
from app.core.metrics import Metrics

metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.request_finished("GET", "/api/v1/health/live", 200, 0.001, counted_in=False)
metrics.request_started()
print("recorded", flush=True)
if sys.argv[2] == "wait":
    sys.stdin.read()
"""


def record(path: Path, requests: int, *, wait: bool = False) -> subprocess.Popen[str]:
    """Start a process recording into `path`; returns once it has recorded (and, unless it
    waits, exited)."""
    process = subprocess.Popen(
        [sys.executable, "-c", RECORDER, str(requests), "wait" if wait else "exit"],
        cwd=PROJECT_DIR,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(path)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "recorded"
    if not wait:
        finish(process)
    return process


def finish(process: subprocess.Popen[str]) -> None:
    """Let a recorder go (its standard input closed) and wait for it to exit with 0."""
    process.communicate(timeout=60)
    assert process.returncode == 0


@contextmanager
def recording(path: Path, requests: int) -> Iterator[subprocess.Popen[str]]:
    process = record(path, requests, wait=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_workers_are_summed_and_a_dead_workers_gauges_dropped(tmp_path: Path) -> None:
    registry = workers_registry(tmp_path)
    live = {"method": "GET", "route": LIVE, "status": "200"}
    with recording(tmp_path, 3) as alive:
        dead = record(tmp_path, 4)  # exits with a request still in flight, as a crash would
        assert (tmp_path / f"gauge_livesum_{dead.pid}.db").exists()
        samples = scrape(registry)
        assert value(samples, "http_request_duration_seconds_count", **live) == 3 + 4
        assert value(samples, "http_request_duration_seconds_sum", **live) > 0
        # Only the live worker's request is in flight; the dead one's file is gone.
        assert value(samples, "http_requests_in_flight") == 1
        assert not (tmp_path / f"gauge_livesum_{dead.pid}.db").exists()
        assert (tmp_path / f"histogram_{dead.pid}.db").exists()
        finish(alive)
    samples = scrape(registry)
    # Its counts stay (a total never goes down); its requests in flight do not.
    assert value(samples, "http_request_duration_seconds_count", **live) == 7
    assert value(samples, "http_requests_in_flight") == 0
    assert drop_dead_workers(tmp_path) == []


def test_a_failing_write_in_multiprocess_mode_is_logged_not_raised(tmp_path: Path) -> None:
    """The metrics files gone from under a worker (a cleaned /tmp): the worker keeps serving."""
    script = f"""
import logging, shutil, sys
from app.core.metrics import Metrics
logging.basicConfig(level=logging.WARNING)
metrics = Metrics()
shutil.rmtree({str(tmp_path / "gone")!r})
metrics.request_finished("GET", "/new/route", 200, 0.001, counted_in=metrics.request_started())
metrics.rate_limit_refused("login")
print("served")
"""
    (tmp_path / "gone").mkdir()
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "gone")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "served"
    assert "metrics: recording failed" in result.stderr
    assert "Traceback" not in result.stderr

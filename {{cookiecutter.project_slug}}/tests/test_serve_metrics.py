"""The metrics `serve` exposes: scraped over HTTP from its metrics port while real worker
processes answer requests, and parsed with prometheus-client's own parser."""

import asyncio
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from app.core.errors import PROBLEM_JSON
from tests import PROJECT_DIR, databases
from tests.core.test_metrics import parse, record, requests, value
from tests.servers import SERVE, free_port, serve

ME = "/api/v1/users/me"
WORKERS = 2
POOL_SIZE, POOL_ENV = databases.SERVED_POOL_SIZE, databases.SERVED_POOL_ENV
# Bounds on the requests sent until both workers have answered some.
BATCH, MAX_BATCHES = 40, 50


def counted_by_worker(path: Path) -> dict[int, float]:
    """Unauthenticated GET /users/me answers (401) counted in each worker's own file."""
    found: dict[int, float] = {}
    for file in path.glob("histogram_*.db"):
        pid = int(file.stem.rpartition("_")[2])
        merged = MultiProcessCollector.merge([str(file)])  # type: ignore[no-untyped-call]
        found[pid] = sum(
            sample.value
            for metric in merged
            for sample in metric.samples
            if sample.name == "http_request_duration_seconds_count"
            and sample.labels == {"method": "GET", "route": ME, "status": "401"}
        )
    return found


async def _send(base_url: str, count: int) -> list[int]:
    """`count` requests at once, each on a connection of its own, so both workers take some."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as client:
        answers = await asyncio.gather(*(client.get(ME) for _ in range(count)))
    return [answer.status_code for answer in answers]


def test_serve_sums_its_workers_on_the_metrics_port_from_a_cleaned_directory(
    migrated_database: str, tmp_path: Path
) -> None:
    files = tmp_path / "metrics"
    files.mkdir()
    # Left by an earlier run (a container restarted with the same directory): 1000 requests
    # that must not be counted again.
    stale = record(files, 1000)
    assert (files / f"histogram_{stale.pid}.db").exists()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(files), **POOL_ENV}
    with serve(migrated_database, tmp_path / "serve.log", workers=WORKERS, env=env) as server:
        assert not (files / f"histogram_{stale.pid}.db").exists()
        sent: list[int] = []
        for _ in range(MAX_BATCHES):
            sent += asyncio.run(_send(server.base_url, BATCH))
            by_worker = counted_by_worker(files)
            if len([pid for pid, count in by_worker.items() if count]) == WORKERS:
                break
        # A worker counts a request once its response is sent, so the last few may land in
        # the files a moment after the client has its answers.
        deadline = time.monotonic() + 10
        while sum(by_worker.values()) < len(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
            by_worker = counted_by_worker(files)
        on_api_port = httpx.get(f"{server.base_url}/metrics", timeout=10)
        scraped = httpx.get(server.metrics_url, timeout=10)
        log = server.log()
    assert set(sent) == {401}
    # Both workers answered some, and the scrape holds their sum.
    assert len(by_worker) == WORKERS, by_worker
    assert all(by_worker.values()), by_worker
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    samples = parse(scraped.text)
    assert requests(samples, "GET", ME, 401) == sum(by_worker.values()) == len(sent)
    # Nothing of the earlier run: the health probe's one request, and no more.
    assert requests(samples, "GET", "/api/v1/health/live", 200) == 1
    assert value(samples, "db_pool_size") == WORKERS * POOL_SIZE
    assert value(samples, "db_pool_checked_out") == 0
    assert value(samples, "http_requests_in_flight") == 0
    # The API port does not serve them.
    assert on_api_port.status_code == 404
    assert on_api_port.headers["content-type"] == PROBLEM_JSON
    assert "http_request_duration_seconds" not in on_api_port.text
    assert "Traceback" not in log


def test_serve_with_metrics_off_listens_on_no_metrics_port(
    migrated_database: str, tmp_path: Path
) -> None:
    env = {"METRICS_ENABLED": "false"}
    with serve(migrated_database, tmp_path / "serve.log", env=env) as server:
        assert httpx.get(f"{server.base_url}/api/v1/health/live", timeout=10).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.metrics_url, timeout=5)


def test_serve_refuses_a_taken_metrics_port_in_one_line(
    migrated_database: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        environment = {
            **os.environ,
            "DATABASE_URL": migrated_database,
            "HOST": "127.0.0.1",
            "PORT": str(free_port()),
            "METRICS_PORT": str(port),
        }
        result = subprocess.run(
            [SERVE], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"cannot serve metrics on 127.0.0.1:{port} (METRICS_PORT): Address already in use"
    )


def test_serve_refuses_the_api_port_as_metrics_port_in_one_line(migrated_database: str) -> None:
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": migrated_database,
        "PORT": str(port),
        "METRICS_PORT": str(port),
    }
    result = subprocess.run(
        [SERVE], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"invalid configuration: METRICS_PORT must differ from PORT ({port}): the API port "
        "never serves the metrics"
    )


def test_a_private_metrics_directory_is_removed_when_serve_stops(
    migrated_database: str, tmp_path: Path
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR, serve makes a directory of its own (under TMPDIR) and
    removes it on its way out."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    port = free_port()
    environment = {
        name: text for name, text in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"
    }
    environment |= {
        "DATABASE_URL": migrated_database,
        "PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "TMPDIR": str(scratch),
    }
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [SERVE], cwd=PROJECT_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 60
        while not list(scratch.glob("*-metrics-*/histogram_*.db")):
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                httpx.get(f"http://127.0.0.1:{port}/api/v1/health/live", timeout=1)
            except httpx.TransportError:
                time.sleep(0.05)
        (private,) = scratch.glob("*-metrics-*")
        process.terminate()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    assert not private.exists()
    assert list(scratch.iterdir()) == []

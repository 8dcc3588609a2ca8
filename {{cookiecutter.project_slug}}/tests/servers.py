"""A real uvicorn serving `app.main:app` on a free loopback port, for tests of the served app,
started by the production command, `serve`."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

from tests import PROJECT_DIR

# Generous: on a machine busy with other suites a server has been seen to take 15 s to answer.
START_TIMEOUT = 60.0
# How often a starting server is asked whether it answers: its start-up is what a test waits for.
POLL_INTERVAL = 0.02


# The `serve` console script of the environment running the tests.
SERVE = Path(sys.executable).with_name("serve")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    base_url: str
    log_path: Path
    # Where `serve` serves the workers' metrics (a port of their own, METRICS_PORT).
    metrics_url: str

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


@dataclass
class Starting:
    process: subprocess.Popen[bytes]
    server: Server


def start(
    database_url: str, log_path: Path, *, workers: int, env: Mapping[str, str] | None
) -> Starting:
    port = free_port()
    metrics_port = free_port()
    while metrics_port == port:
        metrics_port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PYTHONUNBUFFERED": "1",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        # The workers' metric files, beside the log (serve cleans the folder as it starts).
        "PROMETHEUS_MULTIPROC_DIR": str(log_path.parent / "metrics"),
        "WEB_CONCURRENCY": str(workers),
        **(env or {}),
    }
    # The production command (app/serve.py), as `make serve` and the container image run it.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [SERVE], cwd=PROJECT_DIR, env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(
        base_url=f"http://127.0.0.1:{port}",
        log_path=log_path,
        metrics_url=f"http://127.0.0.1:{environment['METRICS_PORT']}/metrics",
    )
    return Starting(process, server)


def wait_until_live(starting: Starting) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            httpx.get(f"{starting.server.base_url}/api/v1/health/live", timeout=1)
            return
        except httpx.TransportError:
            if starting.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"serve did not start:\n{starting.server.log()}")
            time.sleep(POLL_INTERVAL)


def _stop(starting: Starting) -> None:
    starting.process.terminate()
    try:
        starting.process.wait(timeout=15)
    except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
        starting.process.kill()
        starting.process.wait()


@contextmanager
def serve(
    database_url: str,
    log_path: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[Server]:
    """Start uvicorn against `database_url`; wait until it answers; stop it afterwards."""
    with serve_together(database_url, (log_path, env), workers=workers) as (server,):
        yield server


@contextmanager
def serve_together(
    database_url: str,
    *servers: tuple[Path, Mapping[str, str] | None],
    workers: int = 1,
) -> Iterator[list[Server]]:
    """Several servers on `database_url`, one per (log path, extra environment), started at
    once (their start-ups overlap), stopped afterwards."""
    started: list[Starting] = []
    try:
        for log_path, env in servers:
            started.append(start(database_url, log_path, workers=workers, env=env))
        for starting in started:
            wait_until_live(starting)
        yield [starting.server for starting in started]
    finally:
        for starting in started:
            _stop(starting)


class ServedGroupScheduling(LoadGroupScheduling):  # type: ignore[misc]
    """pytest-xdist's `--dist loadgroup`, with the groups taken from the workers' collection.

    Stock loadgroup appends each test's xdist_group to its node id, which pytest 9.2's
    structured node ids no longer allow (pytest-xdist issue 1386): the groups are lost and the
    tests of one server spread over every worker, each starting a server of its own. Here each
    worker writes what it collected, `{node id: group}`, as a JSON file into `groups_dir`
    before reporting its collection; scheduling starts once every worker has reported.
    """

    def __init__(self, config: pytest.Config, log: object, groups_dir: Path) -> None:
        super().__init__(config, log)
        self._groups_dir = groups_dir
        self._groups: dict[str, str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._groups is None:
            self._groups = {}
            for path in sorted(self._groups_dir.glob("*.json")):
                self._groups.update(json.loads(path.read_text(encoding="utf-8")))
        group = self._groups.get(nodeid)
        scope: str = group if group is not None else super()._split_scope(nodeid)
        return scope


def write_groups(groups_dir: Path, worker: str, groups: Mapping[str, str]) -> None:
    """One worker's `{node id: group}`, written whole or not at all."""
    partial = groups_dir / f"{worker}.partial"
    partial.write_text(json.dumps(dict(groups)), encoding="utf-8")
    partial.replace(groups_dir / f"{worker}.json")


async def sign_up(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    """Register an account through the served API and log in: the account's bearer header."""
    registered = await client.post("/auth/register", json={"email": email, "password": password})
    assert registered.status_code == 201, registered.text
    login = await client.post("/auth/login", data={"username": email, "password": password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}

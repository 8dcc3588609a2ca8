"""A real Prometheus scraping a generated service: the project's `serve` with two workers, and
Debian's `prometheus` (and `promtool`) on loopback, with no network beyond this machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from bakery import clean_env, run_in_project, venv_bin

# Generous: Prometheus' first scrape comes 5 to 8 s after it starts on a quiet machine.
DEADLINE = 90.0


def require_prometheus() -> tuple[str, str]:
    """prometheus and promtool. Where they are missing the check skips, except in CI, which
    must run it (Debian: `apt-get install prometheus`)."""
    prometheus, promtool = shutil.which("prometheus"), shutil.which("promtool")
    if prometheus is None or promtool is None:
        reason = "prometheus and promtool are not installed (Debian: apt-get install prometheus)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the real Prometheus check")
        pytest.skip(reason)
    return prometheus, promtool


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while get(url)[0] != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@contextmanager
def running(
    command: list[str], cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=dict(env), stdout=out, stderr=out)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung process
            process.kill()
            process.wait()


def query(base: str, expression: str) -> list[dict[str, Any]]:
    status, body = get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}")
    if status != 200:
        return []
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def check_prometheus_scrape(project: Path, work: Path) -> None:
    """Prometheus scrapes the served project's metrics port and finds, by route template and
    summed over two workers, the requests it was sent; promtool finds nothing to lint in the
    exposition and accepts the scrape configuration."""
    prometheus, promtool = require_prometheus()
    database = f"sqlite+aiosqlite:///{work / 'app.db'}"
    alembic = venv_bin(project, "alembic")
    migrated = run_in_project(project, [alembic, "upgrade", "head"], env={"DATABASE_URL": database})
    assert migrated.returncode == 0, migrated.stdout
    api, metrics, web = free_port(), free_port(), free_port()
    assert len({api, metrics, web}) == 3
    env = clean_env(
        {
            "DATABASE_URL": database,
            "HOST": "127.0.0.1",
            "PORT": str(api),
            "METRICS_PORT": str(metrics),
            "WEB_CONCURRENCY": "2",
        }
    )
    config = work / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: service\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{metrics}']\n",
        encoding="utf-8",
    )
    checked = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    live = f"http://127.0.0.1:{api}/api/v1/health/live"
    with running([str(venv_bin(project, "serve"))], project, env, work / "serve.log") as serve:
        wait_for(live, serve, work / "serve.log")
        for _ in range(9):
            assert get(live)[0] == 200
        for number in range(4):
            assert get(f"http://127.0.0.1:{api}/nowhere/{number}")[0] == 404
        status, exposition = get(f"http://127.0.0.1:{metrics}/metrics")
        assert status == 200, exposition
        linted = subprocess.run(
            [promtool, "check", "metrics"],
            input=exposition,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr
        command = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ]
        base = f"http://127.0.0.1:{web}"
        with running(command, work, clean_env(), work / "prometheus.log") as server:
            wait_for(f"{base}/-/ready", server, work / "prometheus.log")
            served = 'http_request_duration_seconds_count{job="service",status="200"}'
            deadline = time.monotonic() + DEADLINE
            found = query(base, served)
            while not found and time.monotonic() < deadline:
                time.sleep(0.5)
                found = query(base, served)
            assert found, (work / "prometheus.log").read_text(errors="replace")
            up = query(base, 'up{job="service"}')
            by_route = {
                (item["metric"]["route"], item["metric"]["status"]): float(item["value"][1])
                for item in query(base, 'http_request_duration_seconds_count{job="service"}')
            }
            pool = query(base, 'db_pool_size{job="service"}')
    assert [item["value"][1] for item in up] == ["1"]
    # The first probe and nine more, whichever worker took each; four unknown paths, one series.
    assert by_route == {("/api/v1/health/live", "200"): 10, ("<unmatched>", "404"): 4}
    # Two workers, each with SQLAlchemy's pool of 5 for a SQLite file.
    assert [item["value"][1] for item in pool] == ["10"]

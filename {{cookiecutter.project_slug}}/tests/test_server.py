"""The real thing: `app.main:app` served by uvicorn on a loopback port, as `make run` does."""

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic import command

from app.core.config import PROJECT_DIR
from tests.conftest import alembic_config


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    database = tmp_path_factory.mktemp("server") / "server.db"
    url = f"sqlite+aiosqlite:///{database}"
    command.upgrade(alembic_config(url), "head")
    port = _free_port()
    log_path = database.with_suffix(".log")
    env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--port",
                str(port),
                "--no-access-log",
            ],
            cwd=PROJECT_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/api/v1/health/live", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"uvicorn did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield base_url, log_path
    finally:
        process.terminate()
        process.wait(timeout=10)


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

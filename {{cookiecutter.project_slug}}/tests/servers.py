"""The real server: `app.main:app` run by uvicorn on a free loopback port, as `make run` does."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.core.config import PROJECT_DIR


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(log_path: Path, env: Mapping[str, str]) -> Iterator[str]:
    """Start uvicorn with the run's settings plus `env`; yield its base URL, then stop it.

    Everything it prints goes to `log_path`.
    """
    port = free_port()
    environment = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--no-access-log"],
            cwd=PROJECT_DIR,
            env=environment,
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
                    raise RuntimeError(f"uvicorn did not start:\n{log_path.read_text()}") from None
                time.sleep(0.1)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)

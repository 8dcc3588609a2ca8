"""Measures the hot-path choices this service makes against their alternatives, in one run.

Each variant is served by a real uvicorn process on a free loopback port and driven by the
same async client load; every figure is a ratio to a baseline measured in the same run, on
the same machine, so the numbers compare even where the absolute ones do not.

    make bench          # or: python -m bench.hot_path --requests 3000 --rounds 3
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.schemas import Schema

ROUTES = {"async": "/async-model", "sync": "/sync-model", "dict": "/async-dict"}


class Payload(Schema):
    id: int
    name: str
    tags: list[str]


def _payload() -> dict[str, object]:
    return {"id": 1, "name": "widget", "tags": ["a", "b", "c"]}


def create_bench_app() -> object:
    """Three routes that differ in exactly one choice each."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(ROUTES["async"], response_model=Payload)
    async def async_model() -> dict[str, object]:
        return _payload()

    @app.get(ROUTES["sync"], response_model=Payload)
    def sync_model() -> dict[str, object]:
        return _payload()

    @app.get(ROUTES["dict"])
    async def async_dict() -> dict[str, object]:
        return _payload()

    return app


def create_bench_app_with_middleware() -> object:
    """The same routes behind this service's own request middleware (request id, JSON log)."""
    from fastapi import FastAPI

    from app.core.logging import RequestContextMiddleware, configure_logging

    configure_logging("INFO")
    app = create_bench_app()
    assert isinstance(app, FastAPI)
    app.add_middleware(RequestContextMiddleware)
    return app


@dataclass(frozen=True)
class Variant:
    name: str
    route: str
    access_log: bool
    factory: str = "create_bench_app"


VARIANTS = (
    Variant("baseline: async route, response model, no access log", ROUTES["async"], False),
    Variant("sync def route", ROUTES["sync"], False),
    Variant("uvicorn access log on", ROUTES["async"], True),
    Variant("no response model (dict via jsonable_encoder)", ROUTES["dict"], False),
    Variant(
        "this app's request middleware (id + JSON log)",
        ROUTES["async"],
        False,
        "create_bench_app_with_middleware",
    ),
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(port: int, variant: Variant) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        f"bench.hot_path:{variant.factory}",
        "--factory",
        "--port",
        str(port),
        "--log-level",
        "info",
        "--access-log" if variant.access_log else "--no-access-log",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Logs go to a real file, as they would on a server, not to a discarded stream.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=log)


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + 20
    while True:
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    """One keep-alive GET with the least client work possible, so the server is what we time."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)


async def _throughput(port: int, path: str, requests: int, concurrency: int) -> float:
    connections = [await _connect(port) for _ in range(concurrency)]
    for reader, writer in connections:  # warm-up
        await _get(reader, writer, path)
    remaining = iter(range(requests))

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in remaining:
            await _get(reader, writer, path)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(reader, writer) for reader, writer in connections))
    return requests / (time.perf_counter() - started)


def measure(variant: Variant, requests: int, concurrency: int) -> float:
    port = _free_port()
    server = _serve(port, variant)
    try:
        return asyncio.run(_throughput(port, variant.route, requests, concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    results: dict[str, list[float]] = {variant.name: [] for variant in VARIANTS}
    for _ in range(args.rounds):  # interleaved, so drift hits every variant alike
        for variant in VARIANTS:
            results[variant.name].append(measure(variant, args.requests, args.concurrency))

    baseline = statistics.median(results[VARIANTS[0].name])
    print(f"{'variant':<56} {'median req/s':>12} {'vs baseline':>12}")  # noqa: T201
    for variant in VARIANTS:
        median = statistics.median(results[variant.name])
        print(f"{variant.name:<56} {median:>12.0f} {median / baseline:>11.2f}x")  # noqa: T201


if __name__ == "__main__":
    main()

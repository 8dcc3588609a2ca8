"""What routing costs as an API grows: FastAPI apps of 2 to 40 routes, nested or flat.

`app/api.py` includes every router straight on the app. This measures why, in one process and
one run: each app gets the same trivial request for the last route it has, called straight
through ASGI (no server, no network), and the CPU time per request is printed as a ratio to
the smallest flat app. Nested means what the layout used to be: resource routers inside a
versioned router inside a protected router, three levels.

    python -m bench.routing            # or: python -m bench.routing --requests 5000
"""

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.types import Message

RESOURCE_COUNTS = (1, 5, 20)  # two routes each: a list and a read


def resource_router() -> APIRouter:
    router = APIRouter()

    @router.get("")
    async def list_things() -> dict[str, str]:
        return {}

    @router.get("/{thing_id}")
    async def read_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    return router


def build(resources: int, *, nested: bool) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    if not nested:
        for number in range(resources):
            app.include_router(resource_router(), prefix=f"/api/v1/things{number}")
        return app
    protected = APIRouter()
    for number in range(resources):
        protected.include_router(resource_router(), prefix=f"/things{number}")
    versioned = APIRouter(prefix="/api/v1")
    versioned.include_router(protected)
    app.include_router(versioned)
    return app


def scope_for(path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }


async def cpu_per_request(app: FastAPI, path: str, requests: int) -> float:
    """Microseconds of CPU per request, after a warm-up."""

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path} answered {message['status']}")

    for _ in range(200):
        await app(scope_for(path), receive, send)
    started = time.process_time()
    for _ in range(requests):
        await app(scope_for(path), receive, send)
    return (time.process_time() - started) * 1e6 / requests


async def run(requests: int, rounds: int) -> list[tuple[int, str, float]]:
    apps = [
        (resources, nested, build(resources, nested=nested))
        for resources in RESOURCE_COUNTS
        for nested in (False, True)
    ]
    samples: dict[tuple[int, bool], list[float]] = {(r, n): [] for r, n, _ in apps}
    for _ in range(rounds):  # interleaved, so drift on the machine touches every variant
        for resources, nested, app in apps:
            path = f"/api/v1/things{resources - 1}/7"
            samples[(resources, nested)].append(await cpu_per_request(app, path, requests))
    return [
        (resources * 2, "nested 3 levels" if nested else "flat", statistics.median(values))
        for (resources, nested), values in samples.items()
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Routing cost by the number of routes.")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.requests < 1 or args.rounds < 1:
        parser.error("--requests and --rounds must be positive")
    results = asyncio.run(run(args.requests, args.rounds))
    baseline = min(us for routes, layout, us in results if layout == "flat")
    lines = [
        f"Medians of {args.rounds} interleaved rounds, the last route of each app requested.",
        "",
        "| routes | layout | CPU us/request | vs smallest flat |",
        "| ---: | --- | ---: | ---: |",
    ]
    lines += [
        f"| {routes} | {layout} | {us:.0f} | {us / baseline:.2f}x |"
        for routes, layout, us in sorted(results)
    ]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

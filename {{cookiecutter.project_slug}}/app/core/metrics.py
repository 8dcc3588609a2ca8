"""Prometheus metrics: what each request did, the database pool and the rate limit refusals.

`MetricsMiddleware` is plain ASGI, like the other middleware, and nothing it does can fail a
request: every recording step is guarded, and a failure is logged (once a minute at most) and
otherwise ignored. Requests are labelled by method, route template (`/api/v1/users/{user_id}`,
never the raw path) and status; a request that matched no route (a 404 for an unknown path, or
one answered before routing, such as a 400 for a bad Host) counts under `<unmatched>`, and a
method outside the usual ones as `other`, so the number of series stays bounded whatever
clients send.

Under `serve` the values live in prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR,
made fresh by `serve` at every start), so every worker's requests count, and the supervising
process serves their sum on METRICS_PORT (`start_metrics_server`), never on the API port.
Anywhere else (the tests, `make run`) an app counts in a registry of its own, `Metrics.registry`.
"""

import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

import fastapi.routing
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.pool import Pool, QueuePool
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import route_path

logger = logging.getLogger(__name__)

# The `_created` series double what a scrape carries for nothing a query here needs (and the
# multiprocess collector never has them): off, so every mode exposes the same series.
disable_created_metrics()  # type: ignore[no-untyped-call]

UNMATCHED = "<unmatched>"
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds. A cached read takes about a millisecond, a login a tenth of a second or more (the
# password hash), and anything past 10 s has long been cut short by a proxy's timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A recording step that keeps failing is logged this often at most, not on every request.
WARN_EVERY_SECONDS = 60.0
REQUEST_LABELS = ("method", "route", "status")

Templates = tuple[tuple[re.Pattern[str] | None, str], ...]


class Metrics:
    """The service's metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        # The request count is this histogram's `_count` (a counter, as every histogram's is):
        # a separate http_requests_total would cost one more write per request for the same
        # number.
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP requests answered, by the time from arrival to the end of the response.",
            REQUEST_LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # livesum: across the workers that are alive (a dead worker's files are dropped).
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "HTTP requests being served.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_size = Gauge(
            "db_pool_size",
            "Connections the database pool keeps (per worker, summed).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_checked_out = Gauge(
            "db_pool_checked_out",
            "Database connections in use by requests.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool_overflow = Gauge(
            "db_pool_overflow",
            "Connections open beyond the pool size (DATABASE_MAX_OVERFLOW).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.rate_limited = Counter(
            "rate_limit_rejections",
            "Requests refused with 429 by a rate limit, by limit.",
            ("limit",),
            registry=registry,
        )
        # The labelled series already made, by (method, route, status): `labels()` costs a few
        # microseconds a call, a dict lookup far less. Bounded like the labels themselves.
        self._series: dict[tuple[str, str, int], Histogram] = {}
        self._pool: QueuePool | None = None
        self._pool_seen: tuple[int, int, int] | None = None
        self._warned_at = -math.inf

    def request_started(self) -> bool:
        """Count a request in flight; False if that failed (so it is not counted out either)."""
        try:
            self.in_flight.inc()
        except Exception as error:
            self.failed(error)
            return False
        return True

    def request_finished(
        self, method: str, route: str, status: int, seconds: float, *, counted_in: bool
    ) -> None:
        """Record a finished request. Never raises."""
        if counted_in:
            try:
                self.in_flight.dec()
            except Exception as error:
                self.failed(error)
        try:
            key = (method, route, status)
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = self.latency.labels(method, route, str(status))
            series.observe(seconds)
            self.sample_pool()
        except Exception as error:
            self.failed(error)

    def rate_limit_refused(self, limit: str) -> None:
        """Count a 429 of rate limit `limit` (a name of RateLimiter.limits). Never raises."""
        try:
            self.rate_limited.labels(limit).inc()
        except Exception as error:
            self.failed(error)

    def watch_pool(self, pool: Pool | None) -> None:
        """Report this pool from now on (None: stop). A pool that does not queue (no size to
        report) is not watched."""
        self._pool = pool if isinstance(pool, QueuePool) else None
        self._pool_seen = None
        try:
            self.sample_pool()
        except Exception as error:
            self.failed(error)

    def sample_pool(self) -> None:
        """Copy the pool's figures into the gauges, at the end of every request: in several
        workers the values must be written where the supervising process reads them, and a
        request's end is when they change. Only a change is written."""
        pool = self._pool
        if pool is None:
            return
        seen = (pool.size(), pool.checkedout(), max(pool.overflow(), 0))
        if seen != self._pool_seen:
            self.pool_size.set(seen[0])
            self.pool_checked_out.set(seen[1])
            self.pool_overflow.set(seen[2])
            self._pool_seen = seen

    def failed(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning(
                "metrics: recording failed (%s: %s); requests are served regardless",
                type(error).__name__,
                error,
            )


def _route_contexts(routes: Sequence[BaseRoute]) -> Iterable[Any]:
    """Every route with its full path. Newer FastAPI keeps included routers nested and walks
    them with `iter_route_contexts`; older versions copy each route, prefixed, into the app."""
    iter_route_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_route_contexts is None:  # pragma: no cover - depends on the FastAPI version
        return routes
    contexts: Iterable[Any] = iter_route_contexts(routes)
    return contexts


class RouteTemplates:
    """The route template of a routed request, from the route that matched it.

    `scope["route"]` is the matched FastAPI route; under nested routers its `path` lacks the
    prefixes (`/{user_id}`), so the full template comes from the app's route table, looked up
    by that route object (or by endpoint, for plain Starlette routes such as /docs). A route
    included under two prefixes has two templates: the one whose pattern matches the path wins.
    Routes compare by value and cannot be hashed, so the table is keyed by identity, and keeps
    each object it names (so no id is reused while it is in the table).
    """

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = routes
        self._table: dict[int, tuple[object, Templates]] = {}
        self._built_from = -1  # how many routes the app had when the table was built

    def _build(self) -> dict[int, tuple[object, Templates]]:
        found: dict[int, tuple[object, list[tuple[re.Pattern[str] | None, str]]]] = {}
        for context in _route_contexts(self.routes):
            template = getattr(context, "path_format", None)
            if not isinstance(template, str):
                continue
            original = getattr(context, "original_route", context)
            entry = (getattr(context, "path_regex", None), template)
            found.setdefault(id(original), (original, []))[1].append(entry)
            endpoint = getattr(original, "endpoint", None)
            if endpoint is not None and not isinstance(original, fastapi.routing.APIRoute):
                found.setdefault(id(endpoint), (endpoint, []))[1].append(entry)
        return {key: (target, tuple(entries)) for key, (target, entries) in found.items()}

    def of(self, scope: Scope) -> str:
        target = scope.get("route") or scope.get("endpoint")
        if target is None:
            return UNMATCHED
        if self._built_from != len(self.routes):
            # The first request, or routes added to the app since (tests add some): building
            # the table walks every route, so it happens then and never per request.
            self._table = self._build()
            self._built_from = len(self.routes)
        known = self._table.get(id(target))
        if known is None:
            return UNMATCHED  # a route object outside the table: folded, nothing remembered
        templates = known[1]
        if len(templates) == 1:
            return templates[0][1]
        path = route_path(scope)
        for pattern, template in templates:
            if pattern is not None and pattern.match(path):
                return template
        return UNMATCHED


class MetricsMiddleware:
    """Counts and times every HTTP request; outermost, so it sees every answer."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = RouteTemplates(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counted_in = self.metrics.request_started()
        status = 500  # what the client gets if the app fails before it answers

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message.get("status", 500)
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            seconds = time.perf_counter() - started
            method = scope.get("method")
            if method not in METHODS:
                method = OTHER_METHOD
            try:
                route = self.templates.of(scope)
            except Exception as error:
                self.metrics.failed(error)
                route = UNMATCHED
            self.metrics.request_finished(method, route, status, seconds, counted_in=counted_in)


# --- The supervising process (app/serve.py) ---------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def drop_dead_workers(path: Path) -> list[int]:
    """Remove the live gauges of workers that have exited (their in-flight requests and pool
    would otherwise count forever); their counters and histograms stay, as totals must. The
    ids of the workers dropped."""
    dead: set[int] = set()
    for file in path.glob("gauge_live*_*.db"):
        number = file.stem.rpartition("_")[2]
        if number.isdigit() and not _alive(int(number)):
            dead.add(int(number))
    for pid in sorted(dead):
        mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


class WorkerFilesCollector(Collector):
    """The metrics of every worker, summed from their files in `path` at each scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = MultiProcessCollector(None, path=str(path))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        drop_dead_workers(self.path)
        metrics: Iterable[Metric] = self._files.collect()  # type: ignore[no-untyped-call]
        yield from metrics


def workers_registry(path: Path) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(WorkerFilesCollector(path))
    return registry


def start_metrics_server(host: str, port: int, path: Path) -> WSGIServer:
    """Serve the workers' metrics from `path` on host:port, from a thread of this process.

    Raises OSError when the address cannot be bound.
    """
    server, _thread = start_http_server(port, addr=host, registry=workers_registry(path))
    return server

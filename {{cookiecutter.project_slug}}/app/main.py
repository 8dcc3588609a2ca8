"""The application factory. `app.main:app` is the ASGI entry point."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext

from fastapi import FastAPI

from app.api import API_PREFIX, include_api
from app.core.config import Environment, Settings, get_settings
from app.core.errors import install_error_handlers
from app.core.hardening import (
    BodySizeLimitMiddleware,
    ProblemCORSMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostsMiddleware,
    add_swagger_ui,
)
from app.core.logging import REQUEST_ID_HEADER, RequestContextMiddleware, configure_logging
from app.core.metrics import Metrics, MetricsMiddleware
from app.core.ratelimit import RateLimiter
from app.core.runtime import tuned_gc
from app.core.security import Passwords, Tokens
from app.core.tracing import Tracing
from app.db.engine import create_engine
from app.db.session import create_sessionmaker
from app.jobs.engine import create_jobs_engine

logger = logging.getLogger(__name__)

# The probes answer whatever the Host header says (an orchestrator calls them by the pod's IP).
PROBE_PATHS = frozenset({f"{API_PREFIX}/health/live", f"{API_PREFIX}/health/ready"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.LOG_LEVEL)
    metrics = Metrics() if settings.METRICS_ENABLED else None
    # Made before the app, which takes its spans' provider (app/core/tracing.py).
    tracing = Tracing(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        tracing.instrument_engine(engine)
        app.state.sessionmaker = create_sessionmaker(engine)
        app.state.read_sessionmaker = create_sessionmaker(engine, read_only=True)
        if metrics is not None:
            metrics.watch_pool(engine.pool)
        # The jobs engine (app/jobs/engine.py): one per worker process, on this process's pool.
        jobs = create_jobs_engine(
            settings,
            sessionmaker=app.state.sessionmaker,
            read_sessionmaker=app.state.read_sessionmaker,
        )
        if jobs is not None:
            jobs.start()
        try:
            with tuned_gc() if settings.GC_TUNING else nullcontext():
                yield
        finally:
            if jobs is not None:
                await jobs.stop()  # finishes or hands back its jobs, before the pool closes
            if metrics is not None:
                metrics.watch_pool(None)
            await engine.dispose()
            app.state.rate_limiter.close()
            app.state.passwords.close()
            await tracing.shutdown()  # the spans still queued, within TRACING_SHUTDOWN_SECONDS
            # The last thing the lifespan does: whoever reads the logs (and the tests) can see
            # that a stop closed the pool and the rate limit storage instead of dying first.
            logger.info("shutdown: database pool and rate limit storage closed")

    docs = settings.docs_enabled
    app = FastAPI(
        title=settings.project_name,
        description=settings.project_description,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by add_swagger_ui, with a policy of its own
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
        # No redirect from /items/ to /items: it would take its host from the Host header.
        redirect_slashes=False,
        **tracing.fastapi_options(),
    )
    if docs:
        add_swagger_ui(app, "/openapi.json")
    # Made here, not in the lifespan: each app (each test) counts in a storage of its own, and
    # in metrics of its own (None with METRICS_ENABLED=false).
    app.state.metrics = metrics
    app.state.rate_limiter = RateLimiter(settings, metrics=metrics)
    # What the request path needs from the settings, built once from this app's settings
    # (routes get them through TokensDep and PasswordsDep, app/auth/dependencies.py).
    app.state.settings = settings
    app.state.tracing = tracing
    app.state.tokens = Tokens(settings)
    app.state.passwords = Passwords(settings)
    install_error_handlers(app)
    include_api(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.MAX_REQUEST_BODY_BYTES)
    if settings.CORS_ORIGINS:
        # No credentials: the API takes bearer tokens, never cookies.
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.CORS_ORIGINS,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Match",
                REQUEST_ID_HEADER,
            ],
            expose_headers=[REQUEST_ID_HEADER, "ETag", "Location", "Retry-After"],
        )
    if "*" not in settings.ALLOWED_HOSTS:
        app.add_middleware(
            TrustedHostsMiddleware, allowed_hosts=settings.ALLOWED_HOSTS, exempt_paths=PROBE_PATHS
        )
    # Added late, so they run first: every response, CORS and error ones included, gets a
    # request id and the security headers.
    app.add_middleware(RequestContextMiddleware)
    hsts = settings.ENVIRONMENT is Environment.PRODUCTION
    app.add_middleware(SecurityHeadersMiddleware, hsts=hsts)
    if metrics is not None:
        # Outermost: it times and counts every answer, the ones the middleware above gives too.
        app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.routes)
    return app


app = create_app()

"""The production server: the `serve` command, which `make serve` and the container image run.

uvicorn serves `app.main:app` with the workers, address, port and graceful-shutdown timeout
of the settings (WEB_CONCURRENCY, HOST, PORT, GRACEFUL_SHUTDOWN_SECONDS). Two of uvicorn's
features stay off on purpose:

- proxy headers: uvicorn would rewrite the client address from X-Forwarded-For for the peers
  in its own FORWARDED_ALLOW_IPS. The app decides that itself, from TRUSTED_PROXIES
  (`forwarded_client` in app/core/ratelimit.py), so there is one list of trusted proxies;
- the access log: the app logs every request itself, with its request id.

With METRICS_ENABLED (the default), the workers keep their metrics in prometheus-client's
multiprocess files, in a directory made fresh at every start (PROMETHEUS_MULTIPROC_DIR if it
is set: its old files are removed first), and this process serves their sum on
METRICS_HOST:METRICS_PORT (app/core/metrics.py). The API port never serves them.
"""

import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from app.core.config import Environment, Settings, get_settings
from app.core.project import PROJECT_SLUG
from app.core.ratelimit_settings import MEMORY_RATE_LIMIT_STORAGE

APP = "app.main:app"


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for these settings."""
    return {
        "host": str(settings.HOST),
        "port": settings.PORT,
        "workers": settings.WEB_CONCURRENCY,
        "timeout_graceful_shutdown": settings.GRACEFUL_SHUTDOWN_SECONDS,
        "proxy_headers": False,
        "access_log": False,
    }


def _stopped_on_request(signum: int, frame: FrameType | None) -> None:
    """A stop asked for (SIGTERM, SIGINT) is a success: exit status 0.

    uvicorn drains on the signal, then raises it again with the handler it found in place;
    with the default one the process would die of the signal (status 143 for SIGTERM), which
    an orchestrator or `make` reads as a crash.
    """
    raise SystemExit(0)


# prometheus-client's own variable: where each process writes its metric files. It must be set
# before prometheus_client is first imported (it picks its storage then), and the workers
# inherit it.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """A directory with no metric files in it, named in PROMETHEUS_MULTIPROC_DIR.

    The one that variable names already (its files, left by an earlier run, removed: they
    would be counted again), else a new private one, removed at exit.
    """
    configured = os.environ.get(MULTIPROCESS_DIR)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix=f"{PROJECT_SLUG}-metrics-"))
    os.environ[MULTIPROCESS_DIR] = str(path)
    try:
        yield path
    finally:
        del os.environ[MULTIPROCESS_DIR]
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def metrics_served(settings: Settings) -> Iterator[None]:
    """The workers' metrics, served from this process while the server runs."""
    with metrics_directory() as path:
        # Imported only now that PROMETHEUS_MULTIPROC_DIR is set (see MULTIPROCESS_DIR).
        from app.core.metrics import start_metrics_server

        address = f"{settings.metrics_host}:{settings.METRICS_PORT}"
        try:
            server = start_metrics_server(settings.metrics_host, settings.METRICS_PORT, path)
        except OSError as error:
            sys.exit(f"cannot serve metrics on {address} (METRICS_PORT): {error.strerror}")
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()


def per_process_limits_refusal(settings: Settings) -> str | None:
    """Why these settings may not serve production, or None.

    Several workers that each count the rate limits in their own memory let a client have
    every limit once per worker: in production that needs saying (RATE_LIMITS_PER_PROCESS).
    """
    storage, _ = settings.rate_limit_storage
    workers = settings.WEB_CONCURRENCY
    if (
        settings.ENVIRONMENT is not Environment.PRODUCTION
        or workers == 1
        or storage != MEMORY_RATE_LIMIT_STORAGE
        or settings.RATE_LIMITS_PER_PROCESS
    ):
        return None
    return (
        f"invalid configuration: WEB_CONCURRENCY: {workers} workers would each count the rate "
        f"limits in their own memory, so a client would get each limit {workers} times; keep "
        "them in Redis (RATE_LIMIT_STORAGE=redis, from the use_redis option), run one worker, "
        "or set RATE_LIMITS_PER_PROCESS=true to accept it"
    )


def main() -> None:
    settings = get_settings()  # a bad value stops here, with one line naming it
    refusal = per_process_limits_refusal(settings)
    if refusal is not None:
        sys.exit(refusal)
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped_on_request)
    with ExitStack() as stack:
        if settings.METRICS_ENABLED:
            stack.enter_context(metrics_served(settings))
        uvicorn.run(APP, **server_options(settings))


if __name__ == "__main__":
    main()

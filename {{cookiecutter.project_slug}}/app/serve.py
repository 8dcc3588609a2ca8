"""The production server: the `serve` command, which `make serve` and the container image run.

uvicorn serves `app.main:app` with the workers, address, port and graceful-shutdown timeout
of the settings (WEB_CONCURRENCY, HOST, PORT, GRACEFUL_SHUTDOWN_SECONDS). Two of uvicorn's
features stay off on purpose:

- proxy headers: uvicorn would rewrite the client address from X-Forwarded-For for the peers
  in its own FORWARDED_ALLOW_IPS. The app decides that itself, from TRUSTED_PROXIES
  (`forwarded_client` in app/core/ratelimit.py), so there is one list of trusted proxies;
- the access log: the app logs every request itself, with its request id.
"""

import signal
from types import FrameType
from typing import Any

import uvicorn

from app.core.config import Settings, get_settings

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


def main() -> None:
    settings = get_settings()  # a bad value stops here, with one line naming it
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped_on_request)
    uvicorn.run(APP, **server_options(settings))


if __name__ == "__main__":
    main()

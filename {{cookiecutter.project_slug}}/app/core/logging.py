"""Structured JSON logs, one request id per request, and the last line of defence for errors.

`RequestContextMiddleware` is plain ASGI (no BaseHTTPMiddleware) to keep the hot path lean. It
accepts a sane `X-Request-ID` or makes one, echoes it, puts it on every log line of the request,
logs one line per request (uvicorn's access log is off), and turns an unexpected exception into
a generic 500 problem that leaks nothing.
"""

import logging
import random
import re
import sys
import time
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response
from app.core.tracing import current_trace_ids

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER_NAME = REQUEST_ID_HEADER.lower().encode("latin-1")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

logger = logging.getLogger("app.request")


class RequestIdFilter(logging.Filter):
    """Adds the request id to every record, the trace and span ids inside a traced request
    (app/core/tracing.py), and drops uvicorn's terminal-coloured copy."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        trace_ids = current_trace_ids()
        if trace_ids is not None:
            record.trace_id, record.span_id = trace_ids
        record.__dict__.pop("color_message", None)
        return True


class StdoutHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stdout` is at the time of each record (so redirection works)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stdout
        super().emit(record)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stdout for the app and uvicorn alike; idempotent."""
    handler = StdoutHandler(sys.stdout)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # The app logs each request itself, with its request id; uvicorn's access log is off.
    logging.getLogger("uvicorn.access").disabled = True


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = str(value.decode("latin-1"))
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    # 128 random bits as 32 hex digits, like a UUID's: from Python's own generator (seeded by
    # the OS, and again in each forked worker), because a request id needs to be unique, not
    # secret, and os.urandom's system call was a visible share of a cached read's CPU.
    return f"{random.getrandbits(128):032x}"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        request_id = _request_id(scope)
        raw_id = request_id.encode("latin-1")
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_request_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (_HEADER_NAME, raw_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        except Exception:
            logger.exception("unhandled error")
            if response_started:
                raise
            response = problem_response(500, "internal_error", "An unexpected error occurred.")
            await response(scope, receive, send_with_request_id)
        finally:
            # Only the path: a query string may carry something sensitive.
            logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            request_id_var.reset(token)

"""HTTP hardening, as plain ASGI middleware: body size limit, allowed hosts, security headers,
and CORS whose refusals are problem details like every other error.

Also the Swagger UI page, served with a Content-Security-Policy of its own: the API's JSON
responses forbid everything, while the docs page needs its script and styles from a CDN and one
inline script, which is allowed by its hash rather than by 'unsafe-inline'.
"""

import base64
import hashlib
import re
from collections.abc import Collection, Sequence

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response, route_path

# Nothing may be loaded, framed or run: the API only answers JSON.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=63072000; includeSubDomains"
SWAGGER_CDN = "https://cdn.jsdelivr.net"
SWAGGER_FAVICON_HOST = "https://fastapi.tiangolo.com"


class BodySizeLimitMiddleware:
    """413 for a body over `max_bytes`, whether it declares its length or comes in chunks.

    A declared Content-Length is checked before anything is read (the server holds the body to
    it). A body without one is read here, up to the limit, and then replayed to the app.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit():
            if int(declared) > self.max_bytes:
                await self._refuse(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return

        # Gathered into one buffer and handed on as one message: the body costs its own size,
        # however many chunks it came in.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: the app gets that message instead of a body
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                message = {"type": "http.request", "body": bytes(body), "more_body": False}
                break
        first: Message | None = message

        async def replay() -> Message:
            nonlocal first
            if first is None:
                return await receive()
            handed, first = first, None
            return handed

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"The request body is larger than {self.max_bytes} bytes."
        response = problem_response(
            413, "payload_too_large", detail, headers={"Connection": "close"}
        )
        await response(scope, receive, send)


class TrustedHostsMiddleware:
    """Starlette's host check, answering problem+json instead of its plain-text 400.

    Paths in `exempt_paths` (the health probes) answer whatever the Host: a Kubernetes probe
    names the pod's IP address, which is in no list of public host names.
    """

    def __init__(
        self, app: ASGIApp, allowed_hosts: Sequence[str], exempt_paths: Collection[str] = ()
    ) -> None:
        self.app = app
        self.exempt_paths = frozenset(exempt_paths)
        self.check = TrustedHostMiddleware(
            self._mark, allowed_hosts=allowed_hosts, www_redirect=False
        )

    @staticmethod
    async def _mark(scope: Scope, receive: Receive, send: Send) -> None:
        scope["host_allowed"] = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        if route_path(scope) in self.exempt_paths:
            await self.app(scope, receive, send)
            return

        async def discard(message: Message) -> None:
            return None

        await self.check(scope, receive, discard)
        if scope.pop("host_allowed", False):
            await self.app(scope, receive, send)
            return
        detail = "The Host header names no host this service answers to."
        response = problem_response(400, "invalid_host", detail)
        await response(scope, receive, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that a refused preflight is a problem+json 400, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        # Starlette says what it refused as "Disallowed CORS origin, method".
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        return problem_response(
            400,
            "cors_preflight_refused",
            f"The cross-origin request is not allowed; refused: {refused}.",
            headers={"Vary": response.headers["vary"]},
        )


class SecurityHeadersMiddleware:
    """Adds the security headers to every response that does not set its own."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": API_CSP,
            "Cross-Origin-Opener-Policy": "same-origin",
        }
        if hsts:
            headers["Strict-Transport-Security"] = HSTS
        self.headers = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                extra = [header for header in self.headers if header[0] not in present]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _script_hashes(page: bytes) -> str:
    scripts = re.findall(rb"<script>(.*?)</script>", page, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(script).digest()).decode() for script in scripts)
    return " ".join(f"'sha256-{digest}'" for digest in digests)


def add_swagger_ui(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at /docs with a policy that lets exactly its own page load."""
    html = get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} - Swagger UI")
    page = bytes(html.body)
    policy = (
        f"default-src 'none'; script-src {SWAGGER_CDN} {_script_hashes(page)}; "
        f"style-src {SWAGGER_CDN}; img-src {SWAGGER_FAVICON_HOST} data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )

    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    app.add_route("/docs", swagger_ui, include_in_schema=False)

"""HTTP hardening, as plain ASGI middleware: body size limit, allowed hosts, security headers,
and CORS whose refusals are problem details like every other error.

Also the Swagger UI page, served with a Content-Security-Policy of its own: the API's JSON
responses forbid everything, while the docs page needs its script and styles, which this service
serves itself (from the `fastapi-swagger` package: no CDN, so the docs work offline and no third
party can change the script that holds a user's token), and one inline script, which is allowed
by its hash rather than by 'unsafe-inline'.
"""

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, Collection, Sequence
from importlib.resources import as_file, files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import problem_response, route_path

# Nothing may be loaded, framed or run: the API only answers JSON.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
HSTS = "max-age=63072000; includeSubDomains"
# Swagger UI's files, as the fastapi-swagger package ships them, and where /docs finds them.
SWAGGER_ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon-32x32.png": "image/png",
}
SWAGGER_ASSETS_PATH = "/docs/assets"
# A day: the files change only when the package is upgraded, and their ETag tells a client so.
SWAGGER_ASSETS_CACHE_CONTROL = "public, max-age=86400"


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


def _swagger_asset_route(path: Path, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    stat = path.stat()  # once: the file changes only with the package, and a restart

    async def asset(request: Request) -> Response:
        response = FileResponse(
            path,
            stat_result=stat,
            media_type=media_type,
            headers={"Cache-Control": SWAGGER_ASSETS_CACHE_CONTROL},
        )
        if request.headers.get("if-none-match") == response.headers["etag"]:
            return _not_modified_asset(response)
        return response

    return asset


def _not_modified_asset(response: Response) -> Response:
    """304 for a client that already holds this version of the file."""
    kept = {name: response.headers[name] for name in ("etag", "cache-control", "last-modified")}
    return Response(status_code=304, headers=kept)


def add_swagger_ui(app: FastAPI, openapi_url: str) -> None:
    """Serve Swagger UI at /docs, its files from this service, with a policy that lets exactly
    its own page load."""
    resources = files("fastapi_swagger") / "resources"
    for name, media_type in SWAGGER_ASSETS.items():
        # The package is installed as files (never zipped), so this path outlives the `with`.
        with as_file(resources / name) as path:
            if not path.is_file():
                raise RuntimeError(f"fastapi-swagger ships no {name}: reinstall the project")
            app.add_route(
                f"{SWAGGER_ASSETS_PATH}/{name}",
                _swagger_asset_route(Path(path), media_type),
                include_in_schema=False,
            )
    html = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui-bundle.js",
        swagger_css_url=f"{SWAGGER_ASSETS_PATH}/swagger-ui.css",
        swagger_favicon_url=f"{SWAGGER_ASSETS_PATH}/favicon-32x32.png",
    )
    page = bytes(html.body)
    policy = (
        f"default-src 'none'; script-src 'self' {_script_hashes(page)}; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )

    async def swagger_ui(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": policy})

    app.add_route("/docs", swagger_ui, include_in_schema=False)

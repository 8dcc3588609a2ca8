"""Body size limit, security headers, allowed hosts and docs exposure, through the app."""

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable

import pytest
from fastapi import FastAPI
from httpx import AsyncClient, Response
from starlette.types import Message, Receive, Scope, Send

from app.core.errors import PROBLEM_JSON
from app.core.hardening import (
    API_CSP,
    SWAGGER_ASSETS,
    SWAGGER_ASSETS_PATH,
    BodySizeLimitMiddleware,
)
from tests.conftest import client_at

AppWith = Callable[..., FastAPI]
REGISTER = "/api/v1/auth/register"
PRODUCTION = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": "p" * 40,
    "ALLOWED_HOSTS": "api.example.com",
}


def _assert_security_headers(response: Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-security-policy"] == API_CSP


def _assert_too_large(response: Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "payload_too_large"
    assert response.json()["detail"] == "The request body is larger than 1024 bytes."
    _assert_security_headers(response)


async def _chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    yield b'{"email": "a@example.com", "password": "'
    for _ in range(total // size):
        yield b"x" * size
    yield b'"}'


async def test_a_body_over_the_limit_is_refused_by_its_length(app_with: AppWith) -> None:
    async with client_at(app_with(MAX_REQUEST_BODY_BYTES=1024)) as client:
        response = await client.post(REGISTER, content=b"x" * 1025)
    _assert_too_large(response)


async def test_a_chunked_body_over_the_limit_is_refused(app_with: AppWith) -> None:
    async with client_at(app_with(MAX_REQUEST_BODY_BYTES=1024)) as client:
        response = await client.post(REGISTER, content=_chunks(4096))
    assert "content-length" not in response.request.headers
    _assert_too_large(response)


async def test_bodies_within_the_limit_reach_the_app(app_with: AppWith) -> None:
    async with client_at(app_with(MAX_REQUEST_BODY_BYTES=1024)) as client:
        chunked = await client.post(REGISTER, content=_chunks(512))
        sized = await client.post(
            REGISTER, json={"email": "fits@example.com", "password": "long enough"}
        )
    assert chunked.status_code == 422  # read in full: the password is too long for the schema
    assert sized.status_code == 201


async def test_a_body_in_one_byte_chunks_is_put_back_together(app_with: AppWith) -> None:
    document = b'{"email": "bytewise@example.com", "password": "long enough"}'

    async def one_byte_at_a_time() -> AsyncIterator[bytes]:
        for index in range(len(document)):
            yield document[index : index + 1]

    async with client_at(app_with(MAX_REQUEST_BODY_BYTES=1024)) as client:
        response = await client.post(
            REGISTER, content=one_byte_at_a_time(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 201, response.text
    assert response.json()["email"] == "bytewise@example.com"


@pytest.mark.parametrize("declared", ["\u00b2", "12x", "-1", ""])
async def test_a_content_length_that_is_not_a_number_is_read_as_chunks(declared: str) -> None:
    """A Content-Length such as "²" passes str.isdigit() but not int(): never a 500."""
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    parts = iter([b"ab", b"cd"])

    async def receive() -> Message:
        chunk = next(parts)
        return {"type": "http.request", "body": chunk, "more_body": chunk != b"cd"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "headers": [(b"content-length", declared.encode("latin-1"))]}
    await BodySizeLimitMiddleware(app, max_bytes=1024)(scope, receive, send)
    assert seen == [b"abcd"]
    assert sent[0]["status"] == 204


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/v1/health/live", 200),
        ("GET", "/api/v1/nowhere", 404),
        ("PUT", "/api/v1/health/live", 405),
        ("GET", "/api/v1/users/me", 401),
        ("POST", REGISTER, 422),
    ],
)
async def test_every_response_carries_the_security_headers(
    client: AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    _assert_security_headers(response)
    assert "strict-transport-security" not in response.headers


async def test_production_adds_hsts_refuses_other_hosts_and_hides_the_docs(
    app_with: AppWith,
) -> None:
    app = app_with(**PRODUCTION)
    async with client_at(app, base_url="http://api.example.com") as client:
        live = await client.get("/api/v1/health/live")
        other = await client.get("/api/v1/users/me", headers={"Host": "evil.example.com"})
        docs = await client.get("/docs")
        schema = await client.get("/openapi.json")
    assert live.status_code == 200
    assert live.headers["strict-transport-security"].startswith("max-age=")
    assert other.status_code == 400
    assert other.headers["content-type"] == PROBLEM_JSON
    assert other.json()["code"] == "invalid_host"
    _assert_security_headers(other)
    assert "x-request-id" in other.headers
    assert docs.status_code == 404
    assert schema.status_code == 404


async def test_docs_can_be_turned_on_in_production(app_with: AppWith) -> None:
    app = app_with(**PRODUCTION, DOCS_ENABLED=True)
    async with client_at(app, base_url="http://api.example.com") as client:
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        for name in SWAGGER_ASSETS:
            assert (await client.get(f"{SWAGGER_ASSETS_PATH}/{name}")).status_code == 200


async def test_allowed_hosts_accept_subdomain_patterns(app_with: AppWith) -> None:
    app = app_with(ALLOWED_HOSTS="*.example.com")
    async with client_at(app) as client:
        sub = await client.get("/api/v1/users/me", headers={"Host": "eu.example.com:8443"})
        bare = await client.get("/api/v1/users/me", headers={"Host": "example.org"})
    assert sub.status_code == 401
    assert bare.status_code == 400


async def test_swagger_ui_has_a_policy_that_lets_exactly_its_page_load(client: AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(
        directive.strip().split(" ", 1)
        for directive in response.headers["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    # Every script, stylesheet and icon comes from this service (no CDN: the docs work offline),
    # and the policy allows no other origin...
    assert policy["script-src"].split()[0] == "'self'"
    assert policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert "http" not in response.headers["content-security-policy"]
    linked = re.findall(r'<script src="([^"]+)"', response.text) + re.findall(
        r'<link [^>]*href="([^"]+)"', response.text
    )
    assert sorted(linked) == sorted(f"{SWAGGER_ASSETS_PATH}/{name}" for name in SWAGGER_ASSETS)
    # ...and each inline script is allowed by its hash.
    inline = re.findall(r"<script>(.*?)</script>", response.text, flags=re.DOTALL)
    assert inline
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"].split()
    assert policy["connect-src"] == "'self'"  # "Try it out" calls this API
    assert (await client.get("/openapi.json")).headers["content-security-policy"] == API_CSP


@pytest.mark.parametrize("name", sorted(SWAGGER_ASSETS))
async def test_swagger_ui_files_are_served_by_the_service(client: AsyncClient, name: str) -> None:
    response = await client.get(f"{SWAGGER_ASSETS_PATH}/{name}")
    assert response.status_code == 200
    assert response.headers["content-type"] == SWAGGER_ASSETS[name]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert len(response.content) > 500
    assert response.headers["cache-control"] == "public, max-age=86400"
    again = await client.get(
        f"{SWAGGER_ASSETS_PATH}/{name}", headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304


async def test_only_swagger_ui_files_are_served_from_its_folder(client: AsyncClient) -> None:
    for path in ("__init__.py", "../main.py", "swagger-ui-bundle.js.LICENSE.txt"):
        response = await client.get(f"{SWAGGER_ASSETS_PATH}/{path}")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


async def test_docs_and_their_files_are_absent_when_the_docs_are_off(app_with: AppWith) -> None:
    async with client_at(app_with(**PRODUCTION), base_url="http://api.example.com") as client:
        for path in ("/docs", *(f"{SWAGGER_ASSETS_PATH}/{name}" for name in SWAGGER_ASSETS)):
            assert (await client.get(path)).status_code == 404, path


@pytest.mark.parametrize("host", ["10.42.0.17:8000", "api.example.com"])
async def test_health_probes_answer_whatever_the_host(app_with: AppWith, host: str) -> None:
    """A Kubernetes probe names the pod's IP; the host check must not keep it from ready."""
    async with client_at(app_with(**PRODUCTION)) as client:
        live = await client.get("/api/v1/health/live", headers={"Host": host})
        ready = await client.get("/api/v1/health/ready", headers={"Host": host})
        other = await client.get("/api/v1/users/me", headers={"Host": host})
        near = await client.get("/api/v1/health/livex", headers={"Host": host})
    assert live.status_code == 200
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ok"}
    # Everything else, paths that only start like a probe's included, answers its hosts only.
    known = host == "api.example.com"
    assert other.status_code == (401 if known else 400)
    assert near.status_code == (404 if known else 400)

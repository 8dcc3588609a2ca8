"""Rate limits through the app, counted in memory (each app has a storage of its own)."""

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import Response
from pydantic import ValidationError
from starlette.requests import Request

from app.core.config import Settings
from app.core.errors import PROBLEM_JSON
from app.core.ratelimit import RateLimiter, forwarded_client, limit_key
from app.main import create_app
from app.users.models import User
from tests.conftest import client_at
from tests.factories import DEFAULT_PASSWORD

AppWith = Callable[..., FastAPI]


def _settings(**values: Any) -> Settings:
    return Settings(**values)


LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"


async def _login(app: FastAPI, username: str, address: str = "127.0.0.1") -> Response:
    async with client_at(app, address) as client:
        return await client.post(LOGIN, data={"username": username, "password": "wrong guess"})


def _assert_rate_limited(response: Response, *, at_most: int) -> None:
    assert response.status_code == 429
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json() == {
        "type": "about:blank",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "Too many requests; retry after the number of seconds in Retry-After.",
        "code": "rate_limited",
    }
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= at_most


async def test_login_is_limited_per_client_address(app_with: AppWith, user: User) -> None:
    app = app_with(RATE_LIMIT_LOGIN="3/minute")
    statuses = [(await _login(app, f"guess{n}@example.com")).status_code for n in range(3)]
    assert statuses == [401, 401, 401]
    refused = await _login(app, user.email)
    _assert_rate_limited(refused, at_most=60)
    # The right password does not help from that address; another address is unaffected.
    async with client_at(app) as client:
        good = {"username": user.email, "password": DEFAULT_PASSWORD}
        assert (await client.post(LOGIN, data=good)).status_code == 429
    async with client_at(app, "198.51.100.20") as client:
        assert (await client.post(LOGIN, data=good)).status_code == 200


async def test_failed_logins_are_counted_per_username_whatever_the_case(
    app_with: AppWith,
) -> None:
    app = app_with(RATE_LIMIT_LOGIN_USERNAME="2/minute")
    assert (await _login(app, "ada@example.com", "198.51.100.1")).status_code == 401
    assert (await _login(app, " Ada@Example.COM", "198.51.100.2")).status_code == 401
    _assert_rate_limited(await _login(app, "ADA@example.com", "198.51.100.1"), at_most=60)
    _assert_rate_limited(await _login(app, "ada@example.com ", "198.51.100.2"), at_most=60)
    # Another username from the same address, and the same one from a clean address, go on.
    assert (await _login(app, "grace@example.com", "198.51.100.1")).status_code == 401
    assert (await _login(app, "ada@example.com", "198.51.100.3")).status_code == 401


async def test_registration_is_limited_per_client_address(app_with: AppWith) -> None:
    app = app_with(RATE_LIMIT_REGISTER="2/hour")
    async with client_at(app) as client:
        for n in range(2):
            body = {"email": f"new{n}@example.com", "password": "long enough"}
            assert (await client.post(REGISTER, json=body)).status_code == 201
        third = await client.post(REGISTER, json={"email": "new2@example.com", "password": "x"})
    _assert_rate_limited(third, at_most=3600)
    assert int(third.headers["retry-after"]) > 3500  # the window is an hour, not a minute
    async with client_at(app, "198.51.100.30") as client:
        body = {"email": "elsewhere@example.com", "password": "long enough"}
        assert (await client.post(REGISTER, json=body)).status_code == 201


async def test_default_limit_covers_the_api_but_not_health(app_with: AppWith) -> None:
    app = app_with(RATE_LIMIT_DEFAULT="2/minute")
    async with client_at(app) as client:
        # Counted before the token is checked: anonymous and bad-token calls count too.
        assert (await client.get(ME)).status_code == 401
        assert (await client.get(ME, headers={"Authorization": "Bearer nope"})).status_code == 401
        _assert_rate_limited(await client.get(ME), at_most=60)
        _assert_rate_limited(await client.post(LOGIN, data={}), at_most=60)
        for _ in range(4):
            assert (await client.get("/api/v1/health/live")).status_code == 200
    async with client_at(app, "198.51.100.40") as client:
        assert (await client.get(ME)).status_code == 401


def test_every_limited_operation_documents_429() -> None:
    paths = create_app().openapi()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            documented = "429" in operation["responses"]
            assert documented is not path.startswith("/api/v1/health/"), (method, path)
            if documented:
                assert PROBLEM_JSON in operation["responses"]["429"]["content"]


TRUSTED = {"TRUSTED_PROXIES": "10.0.0.0/8", "RATE_LIMIT_DEFAULT": "1/minute"}


async def _status_via(app: FastAPI, peer: str, forwarded_for: str) -> int:
    async with client_at(app, peer) as client:
        response = await client.get(ME, headers={"X-Forwarded-For": forwarded_for})
        return response.status_code


async def test_a_trusted_proxy_forwards_the_client_address(app_with: AppWith) -> None:
    app = app_with(**TRUSTED)
    # Two clients behind the same proxy each have their own budget.
    assert await _status_via(app, "10.0.0.5", "198.51.100.1") == 401
    assert await _status_via(app, "10.0.0.5", "198.51.100.2") == 401
    assert await _status_via(app, "10.0.0.5", "198.51.100.1") == 429
    # Whatever a client puts left of the proxy's entry does not give it a new budget.
    assert await _status_via(app, "10.0.0.6", "1.2.3.4, 198.51.100.2, 10.0.0.9") == 429


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(app_with: AppWith) -> None:
    app = app_with(**TRUSTED)
    assert await _status_via(app, "203.0.113.9", "198.51.100.1") == 401
    assert await _status_via(app, "203.0.113.9", "198.51.100.77") == 429
    # Without any trusted proxy, the header is never read.
    app = app_with(RATE_LIMIT_DEFAULT="1/minute")
    assert await _status_via(app, "10.0.0.5", "198.51.100.1") == 401
    assert await _status_via(app, "10.0.0.5", "198.51.100.2") == 429


@pytest.mark.parametrize(
    ("peer", "header", "expected"),
    [
        ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
        ("10.0.0.5", ["6.6.6.6, 198.51.100.1, 10.1.2.3"], "198.51.100.1"),
        ("10.0.0.5", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # repeated header
        ("10.0.0.5", ["10.0.0.7, 10.0.0.8"], "10.0.0.7"),  # all trusted: the furthest one
        ("10.0.0.5", ["198.51.100.1, not-an-ip"], "10.0.0.5"),  # garbage from the proxy
        ("10.0.0.5", ["garbage, 10.0.0.9"], "10.0.0.9"),
        ("10.0.0.5", [], "10.0.0.5"),
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),  # untrusted peer
        ("unknown", ["198.51.100.1"], "unknown"),
        ("2001:db8::1", ["198.51.100.1"], "2001:db8::1"),
        ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),  # a trusted proxy, IPv4-mapped
    ],
)
def test_forwarded_client(peer: str, header: list[str], expected: str) -> None:
    trusted = _settings(TRUSTED_PROXIES="10.0.0.0/8").TRUSTED_PROXIES
    assert forwarded_client(peer, header, trusted) == expected


def test_client_address_reads_the_request() -> None:
    limiter = RateLimiter(_settings(TRUSTED_PROXIES="127.0.0.1"))
    scope = {
        "type": "http",
        "client": ("127.0.0.1", 5000),
        "headers": [(b"x-forwarded-for", b"198.51.100.9")],
    }
    assert limiter.client_address(Request(scope)) == "198.51.100.9"
    assert limiter.client_address(Request({**scope, "client": None})) == "unknown"


@pytest.mark.parametrize(
    ("address", "prefix", "expected"),
    [
        ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
        ("2001:DB8:1:2::1", 64, "2001:db8:1:2::/64"),
        ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
        ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
        ("::ffff:198.51.100.7", 64, "198.51.100.7"),  # IPv4-mapped: its IPv4 address
        ("198.51.100.7", 64, "198.51.100.7"),
        ("198.51.100.7", 32, "198.51.100.7"),  # IPv4 is never grouped
        ("unknown", 64, "unknown"),
    ],
)
def test_limit_key(address: str, prefix: int, expected: str) -> None:
    assert limit_key(address, prefix) == expected


@pytest.mark.parametrize("prefix", ["31", "129", "sixty-four"])
def test_ipv6_prefix_is_bounded(prefix: str) -> None:
    with pytest.raises(ValidationError, match="RATE_LIMIT_IPV6_PREFIX"):
        _settings(RATE_LIMIT_IPV6_PREFIX=prefix)


async def _limited_request(app: FastAPI, limit: str, address: str, n: int) -> int:
    """One request that spends a hit of `limit` from `address`; its status code."""
    async with client_at(app, address) as client:
        if limit == "DEFAULT":
            response = await client.get(ME)
        elif limit == "LOGIN":
            form = {"username": f"guess{n}@example.com", "password": "wrong guess"}
            response = await client.post(LOGIN, data=form)
        else:
            body = {"email": f"new{n}@example.com", "password": "long enough"}
            response = await client.post(REGISTER, json=body)
        return response.status_code


@pytest.mark.parametrize("limit", ["DEFAULT", "LOGIN", "REGISTER"])
async def test_ipv6_clients_count_by_their_64_and_mapped_ipv4_as_ipv4(
    app_with: AppWith, limit: str
) -> None:
    app = app_with(**{f"RATE_LIMIT_{limit}": "1/minute"})
    addresses = [
        ("2001:db8:1:2::1", False),
        ("2001:db8:1:2:ffff:ffff:ffff:fffe", True),  # the same /64: the same budget
        ("2001:db8:1:3::1", False),  # the next /64 has one of its own
        ("198.51.100.7", False),
        ("::ffff:198.51.100.7", True),  # the same IPv4 client, seen by a dual-stack socket
        ("198.51.100.8", False),  # IPv4 addresses are still counted one by one
    ]
    for n, (address, limited) in enumerate(addresses):
        status = await _limited_request(app, limit, address, n)
        assert (status == 429) is limited, (address, status)


async def test_the_ipv6_prefix_is_a_setting(app_with: AppWith) -> None:
    app = app_with(RATE_LIMIT_DEFAULT="1/minute", RATE_LIMIT_IPV6_PREFIX="128")
    assert await _limited_request(app, "DEFAULT", "2001:db8::1", 0) == 401
    assert await _limited_request(app, "DEFAULT", "2001:db8::2", 1) == 401
    assert await _limited_request(app, "DEFAULT", "2001:db8::1", 2) == 429
    app = app_with(RATE_LIMIT_DEFAULT="1/minute", RATE_LIMIT_IPV6_PREFIX="48")
    assert await _limited_request(app, "DEFAULT", "2001:db8:1:2::1", 0) == 401
    assert await _limited_request(app, "DEFAULT", "2001:db8:1:9::1", 1) == 429

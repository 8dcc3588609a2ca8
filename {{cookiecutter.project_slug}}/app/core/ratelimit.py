"""Rate limits: a moving window per key, counted by the `limits` library's asyncio API.

Routes spend hits through small dependencies (`limit_default`, `limit_login`, `limit_register`)
keyed by the client address (`client_address`) and, for login, also by the username. Past the
limit the answer is a 429 with `Retry-After`. When the storage fails, RATE_LIMIT_FAIL_OPEN
decides: let requests through (one warning per outage) or refuse them with 503.
"""

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core.config import Settings
from app.core.errors import RateLimitUnavailable, TooManyRequests

logger = logging.getLogger(__name__)

# Seconds a failed storage is left alone before it is tried again, and the most a readiness
# check waits for it.
STORAGE_RETRY_SECONDS = 1.0
STORAGE_CHECK_TIMEOUT = 0.5

Network = IPv4Network | IPv6Network


def _parse_ip(value: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(value)
    except ValueError:
        return None


def forwarded_client(peer: str, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> str:
    """The client address, believing X-Forwarded-For only as far as trusted proxies wrote it.

    Each proxy appends the address it received the request from, so the list is read from the
    right: trusted proxies are skipped and the first address that is not one is the client. An
    untrusted peer may write anything in the header, so its own address is used instead.
    """

    def is_trusted(address: IPv4Address | IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in trusted)

    if not is_trusted(_parse_ip(peer)):
        return peer
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None:  # garbage: keep the last address a trusted proxy vouched for
            break
        client = str(address)
        if not is_trusted(address):
            break
    return client


class RateLimiter:
    """The named limits of this app, counted in one storage (memory or Redis)."""

    def __init__(self, settings: Settings) -> None:
        uri, options = settings.rate_limit_storage
        storage = storage_from_string(uri, wrap_exceptions=True, **options)
        assert isinstance(storage, Storage), f"{uri} is not an asyncio storage"
        self.storage = storage
        self.window = MovingWindowRateLimiter(self.storage)
        self.fail_open = settings.RATE_LIMIT_FAIL_OPEN
        self.trusted_proxies: tuple[Network, ...] = tuple(settings.TRUSTED_PROXIES)
        self.limits: dict[str, list[RateLimitItem]] = {
            "default": parse_many(settings.RATE_LIMIT_DEFAULT),
            "login": parse_many(settings.RATE_LIMIT_LOGIN),
            "login_username": parse_many(settings.RATE_LIMIT_LOGIN_USERNAME),
            "register": parse_many(settings.RATE_LIMIT_REGISTER),
        }
        self._storage_down = False
        self._retry_at = 0.0

    def client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return forwarded_client(
            peer, request.headers.getlist("x-forwarded-for"), self.trusted_proxies
        )

    async def hit(self, name: str, key: str) -> None:
        """Count one request of limit `name` for `key`; raise TooManyRequests past the limit."""
        if self._resting():
            if not self.fail_open:
                raise RateLimitUnavailable
            return
        try:
            refused = [
                item for item in self.limits[name] if not await self.window.hit(item, name, key)
            ]
            resets = [
                (await self.window.get_window_stats(item, name, key)).reset_time for item in refused
            ]
        except StorageError as error:
            self._storage_failed(error)
            return
        if self._storage_down:
            self._storage_down = False
            logger.info("rate limit storage is reachable again")
        if resets:
            raise TooManyRequests(retry_after=max(1, math.ceil(max(resets) - time.time())))

    async def storage_reachable(self) -> bool:
        if self._resting():
            return False
        try:
            async with asyncio.timeout(STORAGE_CHECK_TIMEOUT):
                return await self.storage.check()
        except TimeoutError:
            return False

    def _resting(self) -> bool:
        """After a failure the storage is left alone for a while: a Redis that hangs would
        otherwise hold every request for its full timeout (and its client's retries)."""
        return self._storage_down and time.monotonic() < self._retry_at

    def close(self) -> None:
        """Drop the storage's open connections (Redis has some; memory has none)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            pool.disconnect()

    def _storage_failed(self, error: Exception) -> None:
        self._retry_at = time.monotonic() + STORAGE_RETRY_SECONDS
        if not self._storage_down:
            self._storage_down = True
            action = "letting requests through" if self.fail_open else "refusing requests with 503"
            logger.warning(
                "rate limit storage unavailable (%s); %s until it is back",
                type(error.__cause__ or error).__name__,
                action,
            )
        if not self.fail_open:
            raise RateLimitUnavailable


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_client_address(request: Request, limiter: RateLimiterDep) -> str:
    return limiter.client_address(request)


ClientAddress = Annotated[str, Depends(get_client_address)]


async def limit_default(limiter: RateLimiterDep, address: ClientAddress) -> None:
    """The default limit of the API, per client address."""
    await limiter.hit("default", address)


async def limit_register(limiter: RateLimiterDep, address: ClientAddress) -> None:
    await limiter.hit("register", address)


async def limit_login(request: Request, limiter: RateLimiterDep, address: ClientAddress) -> None:
    """Per address, then per username: the form has been parsed (and cached) by now.

    The username is hashed so that no email address is kept in the limit storage.
    """
    await limiter.hit("login", address)
    username = (await request.form()).get("username")
    if isinstance(username, str) and username.strip():
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()
        await limiter.hit("login_username", digest)

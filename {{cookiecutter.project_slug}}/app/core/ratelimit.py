"""Rate limits: a moving window per key, counted by the `limits` library's asyncio API.

Routes spend hits through small dependencies (`limit_default`, `limit_login`, `limit_register`)
keyed by the client address (`client_key`: an IPv6 client counts by its network, a /64 by
default). Password checks are limited by their failures instead (`limit_failures`): a username
or user with too many recent failures is refused only from addresses that have failed too, so
nobody can lock an account's owner out by guessing wrong on purpose. Past a limit the answer is
a 429 with `Retry-After`, counted in the app's metrics by limit name. When the storage fails,
RATE_LIMIT_FAIL_OPEN decides: let requests through (one warning per outage) or refuse them
with 503.
"""

import asyncio
import hashlib
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from app.core.config import Settings
from app.core.errors import RateLimitUnavailable, TooManyRequests, Unauthorized
from app.core.metrics import Metrics
from app.core.ratelimit_settings import MEMORY_RATE_LIMIT_STORAGE

logger = logging.getLogger(__name__)

# Seconds a failed storage is left alone before it is tried again, and the most a readiness
# check waits for it.
STORAGE_RETRY_SECONDS = 1.0
STORAGE_CHECK_TIMEOUT = 0.5

Network = IPv4Network | IPv6Network

# How often the in-process storage drops the windows of keys that have gone quiet.
SWEEP_SECONDS = 10.0


@dataclass(slots=True)
class _Window:
    seconds: int
    hits: deque[float] = field(default_factory=deque)  # hit times, oldest first


class MovingWindowMemoryStorage(MemoryStorage):
    """`limits`' in-process storage, with the moving window kept as a deque of hit times per key.

    `limits`' own in-process moving window (5.x) inserts each hit at the front of a list and,
    after every hit, starts a task that walks every key and hands each key's list to a thread:
    a thread round trip per key on every request, and a copy of the list each time. That cost
    more CPU than the rest of an authenticated read put together. Here a hit drops the expired
    times from the left of its key's deque and appends its own on the right (no await, so no
    lock is needed on one event loop), and every SWEEP_SECONDS the keys whose newest hit has
    expired are dropped. The answers are the moving window's: at most `limit` hits in any
    `expiry` seconds. Only the moving window is served from here; the strategies this service
    does not use fall through to `limits`' own code.
    """

    # No STORAGE_SCHEME of its own, so not registered under a URI: RateLimiter builds it.

    def __init__(self) -> None:
        super().__init__()
        self.windows: dict[str, _Window] = {}
        self._sweep_at = time.time() + SWEEP_SECONDS

    def _hits(self, key: str, expiry: int, now: float) -> deque[float]:
        if now >= self._sweep_at:
            self._sweep(now)
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = _Window(expiry)
        hits, oldest_kept = window.hits, now - expiry
        while hits and hits[0] < oldest_kept:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        self._sweep_at = now + SWEEP_SECONDS
        quiet = [
            key
            for key, window in self.windows.items()
            if not window.hits or window.hits[-1] < now - window.seconds
        ]
        for key in quiet:
            del self.windows[key]

    async def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        hits = self._hits(key, expiry, now)
        if len(hits) + amount > limit:
            return False
        hits.extend([now] * amount)
        return True

    async def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """The time of the oldest hit in the window (now, if none) and the number of hits."""
        now = time.time()
        hits = self._hits(key, expiry, now)
        return (hits[0], len(hits)) if hits else (now, 0)

    async def clear(self, key: str) -> None:
        self.windows.pop(key, None)
        await super().clear(key)

    async def reset(self) -> int | None:
        cleared = len(self.windows)
        self.windows.clear()
        await super().reset()
        return cleared


def _parse_ip(value: str) -> IPv4Address | IPv6Address | None:
    """The address in `value`, an IPv4-mapped IPv6 one (`::ffff:192.0.2.1`, as a dual-stack
    socket reports an IPv4 peer) as its IPv4 address; None for anything else."""
    try:
        address = ip_address(value)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


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


def limit_key(address: str, ipv6_prefix: int) -> str:
    """The key a client address counts under.

    An IPv6 client is usually given a whole /64 (or more) and may pick any address in it, so an
    IPv6 address counts as its network of `ipv6_prefix` bits. An IPv4-mapped IPv6 address
    (`::ffff:192.0.2.1`, as dual-stack sockets report IPv4 peers) counts as its IPv4 address.
    """
    parsed = _parse_ip(address)
    if parsed is None:
        return address
    if isinstance(parsed, IPv6Address):
        return str(IPv6Network((int(parsed), ipv6_prefix), strict=False))
    return str(parsed)


class RateLimiter:
    """The named limits of this app, counted in one storage (memory or Redis)."""

    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        uri, options = settings.rate_limit_storage
        storage = (
            MovingWindowMemoryStorage()
            if uri == MEMORY_RATE_LIMIT_STORAGE
            else storage_from_string(uri, wrap_exceptions=True, **options)
        )
        assert isinstance(storage, Storage), f"{uri} is not an asyncio storage"
        self.storage = storage
        self.window = MovingWindowRateLimiter(self.storage)
        self.fail_open = settings.RATE_LIMIT_FAIL_OPEN
        self.trusted_proxies: tuple[Network, ...] = tuple(settings.TRUSTED_PROXIES)
        self.ipv6_prefix = settings.RATE_LIMIT_IPV6_PREFIX
        self.limits: dict[str, list[RateLimitItem]] = {
            "default": parse_many(settings.RATE_LIMIT_DEFAULT),
            "login": parse_many(settings.RATE_LIMIT_LOGIN),
            "register": parse_many(settings.RATE_LIMIT_REGISTER),
            "email_request": parse_many(settings.RATE_LIMIT_EMAIL_REQUESTS),
            "email_recipient": parse_many(settings.RATE_LIMIT_EMAILS_PER_RECIPIENT),
            # Failures, not attempts (see `limit_failures`).
            "login_failure": parse_many(settings.RATE_LIMIT_LOGIN_USERNAME),
            "current_password_failure": parse_many(settings.RATE_LIMIT_CURRENT_PASSWORD),
        }
        self._storage_down = False
        self._retry_at = 0.0
        self.metrics = metrics

    def _refuse(self, name: str, resets: Sequence[float]) -> NoReturn:
        """The 429 of limit `name`, counted in the metrics."""
        if self.metrics is not None:
            self.metrics.rate_limit_refused(name)
        raise TooManyRequests(retry_after=_seconds_until(max(resets)))

    def client_address(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        return forwarded_client(
            peer, request.headers.getlist("x-forwarded-for"), self.trusted_proxies
        )

    def client_key(self, request: Request) -> str:
        """The key every per-address limit counts the client under (`limit_key`)."""
        return limit_key(self.client_address(request), self.ipv6_prefix)

    async def hit(self, name: str, key: str) -> None:
        """Count one request of limit `name` for `key`; raise TooManyRequests past the limit."""
        if self._skipped_while_resting():
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
        self._storage_answered()
        if resets:
            self._refuse(name, resets)

    async def allows(self, name: str, key: str) -> bool:
        """Count one hit of limit `name` for `key`: False past the limit, where `hit` would
        refuse. For a limit the client must not notice (`email_recipient`); when the storage
        is down it answers as `hit` does: True failing open, RateLimitUnavailable failing closed."""
        try:
            await self.hit(name, key)
        except TooManyRequests:
            return False
        return True

    async def check_failures(self, name: str, key: str, address: str) -> None:
        """Raise TooManyRequests when `key` has had too many failures of `name` in its window
        and `address` has failed at least once in it too. Spends no hit."""
        if self._skipped_while_resting():
            return
        items = self.limits[name]
        try:
            full = [item for item in items if not await self.window.test(item, name, "key", key)]
            here = [
                await self.window.get_window_stats(item, name, "address", address)
                for item in (items if full else [])
            ]
            failed_here = any(
                stats.remaining < item.amount for item, stats in zip(items, here, strict=False)
            )
            # The key's oldest failure leaving the window is when a try may pass again.
            resets = [
                (await self.window.get_window_stats(item, name, "key", key)).reset_time
                for item in (full if failed_here else [])
            ]
        except StorageError as error:
            self._storage_failed(error)
            return
        self._storage_answered()
        if resets:
            self._refuse(name, resets)

    async def record_failure(self, name: str, key: str, address: str) -> None:
        """Count one failure of `name` for `key` and for `address`. Never raises: the request
        has failed already, and that answer stands."""
        if self._resting():
            return
        try:
            for item in self.limits[name]:
                await self.window.hit(item, name, "key", key)
                await self.window.hit(item, name, "address", address)
        except StorageError as error:
            self._storage_failed(error, refuse=False)
            return
        self._storage_answered()

    async def storage_reachable(self) -> bool:
        if self._resting():
            return False
        try:
            async with asyncio.timeout(STORAGE_CHECK_TIMEOUT):
                return await self.storage.check()
        except TimeoutError:
            return False

    def _skipped_while_resting(self) -> bool:
        """True when the storage is resting and limits fail open (the request goes through
        uncounted); raises RateLimitUnavailable when they fail closed."""
        if not self._resting():
            return False
        if not self.fail_open:
            raise RateLimitUnavailable
        return True

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

    def _storage_answered(self) -> None:
        if self._storage_down:
            self._storage_down = False
            logger.info("rate limit storage is reachable again")

    def _storage_failed(self, error: Exception, *, refuse: bool = True) -> None:
        self._retry_at = time.monotonic() + STORAGE_RETRY_SECONDS
        if not self._storage_down:
            self._storage_down = True
            action = "letting requests through" if self.fail_open else "refusing requests with 503"
            logger.warning(
                "rate limit storage unavailable (%s); %s until it is back",
                type(error.__cause__ or error).__name__,
                action,
            )
        if refuse and not self.fail_open:
            raise RateLimitUnavailable


def _seconds_until(moment: float) -> int:
    return max(1, math.ceil(moment - time.time()))


async def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


async def get_client_key(request: Request, limiter: RateLimiterDep) -> str:
    return limiter.client_key(request)


ClientKey = Annotated[str, Depends(get_client_key)]


async def limit_default(request: Request) -> None:
    """The default limit of the API, per client address.

    It runs on every request, so it takes the request alone: each dependency FastAPI resolves
    costs a little, on every request that has it.
    """
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.hit("default", limiter.client_key(request))


async def limit_register(limiter: RateLimiterDep, client: ClientKey) -> None:
    await limiter.hit("register", client)


async def limit_email_requests(limiter: RateLimiterDep, client: ClientKey) -> None:
    """Password-reset and verification-email requests per client address."""
    await limiter.hit("email_request", client)


def recipient_key(email: str) -> str:
    """The key an email address counts under: hashed, as no address is kept in the storage."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def limit_login(limiter: RateLimiterDep, client: ClientKey) -> None:
    """Login attempts per client address, whatever their outcome."""
    await limiter.hit("login", client)


FailureLimit = Callable[[RateLimiter, str, str | None], AsyncIterator[None]]


def limit_failures(
    name: str, *, key: Callable[..., Awaitable[str | None]], failure: type[Exception]
) -> FailureLimit:
    """A dependency that counts the route's failures (`failure` raised by the endpoint) per
    `key` (a dependency naming the account; None: not counted) and per client address.

    Before the endpoint runs it refuses (429) only when the key has had too many failures in the
    window of limit `name` AND the client's own address has failed in it: whoever keeps failing
    is stopped, while the account's owner, from an address with no recent failures, still gets
    in with the right password. Use it with `scope="function"`, so a failure is counted before
    its answer is sent.
    """

    async def dependency(
        limiter: RateLimiterDep, client: ClientKey, subject: Annotated[str | None, Depends(key)]
    ) -> AsyncIterator[None]:
        if subject is None:
            yield
            return
        await limiter.check_failures(name, subject, client)
        try:
            yield
        except failure:
            await limiter.record_failure(name, subject, client)
            raise

    return dependency


async def login_username(request: Request) -> str | None:
    """The login form's username, normalised and hashed (no email address is kept in the limit
    storage). The form has been parsed, and cached, by the time this runs."""
    username = (await request.form()).get("username")
    if isinstance(username, str) and username.strip():
        return recipient_key(username)
    return None


# Failed logins per username (RATE_LIMIT_LOGIN_USERNAME); any 401 from login is one.
limit_login_failures = limit_failures("login_failure", key=login_username, failure=Unauthorized)

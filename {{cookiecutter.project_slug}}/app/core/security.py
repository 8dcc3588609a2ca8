"""Password hashing and access tokens, as objects built from the settings.

`create_app(settings)` builds one `Passwords` and one `Tokens` and keeps them on `app.state`;
routes receive them through `PasswordsDep` and `TokensDep` (app/auth/dependencies.py) and hand
them to services. Nothing here reads the process-wide settings.

Passwords: pwdlib with Argon2id for every new hash; bcrypt hashes (from an older system) still
verify and are replaced by Argon2id at the next successful login. Hashing is CPU-bound and
memory-hungry (PASSWORD_HASH_MEMORY_KIB each), so it runs in worker threads of its own: at most
PASSWORD_HASH_CONCURRENCY at once per process, below the event loop's scheduling priority,
never on the event loop and never taking the threads the rest of the app runs blocking work in.

Access tokens: short-lived JWTs (PyJWT), algorithm pinned, with `exp`, `iat`, `nbf`, `iss`,
`aud`, `sub`, `jti`, `type` and `ver` all required. Each names its signing key in the `kid`
header and is checked with that key of the keyring (settings.jwt_keys), so a new key can sign
while tokens signed with the old one still verify, until it is removed. The time claims are
checked with JWT_LEEWAY_SECONDS of tolerance, for instances whose clocks differ a little.
Refresh tokens are opaque random strings; only their SHA-256 digest is stored (see
app/auth/service.py).
"""

import asyncio
import contextlib
import hashlib
import os
import re
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TypeVar

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from app.core.config import Settings

# A compact JWS is three base64url segments joined by dots, and nothing else. PyJWT before 2.14
# decoded base64 leniently and skipped characters outside the alphabet, so a valid token with
# bytes appended verified; this check refuses such a token whatever PyJWT's version.
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")

ACCESS_TOKEN_TYPE = "access"
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "type", "ver")
# bcrypt reads at most this many bytes of a password; bcrypt 5 raises for longer ones.
BCRYPT_MAX_BYTES = 72

T = TypeVar("T")


class _LegacyBcrypt(BcryptHasher):
    """Verifies the bcrypt hashes of an older system; never makes new ones.

    A password longer than bcrypt can read cannot be the one a bcrypt hash was made from (new
    passwords are hashed with Argon2id), so it is a mismatch like any other, not an error:
    an error would be a 500 that only legacy accounts give, telling them apart.
    """

    def verify(self, password: str | bytes, hash: str | bytes) -> bool:
        raw = password.encode() if isinstance(password, str) else password
        if len(raw) > BCRYPT_MAX_BYTES:
            return False
        return super().verify(raw, hash)


# How much lower than the event loop's the hashing threads' scheduling priority is (Linux
# "nice" steps). A login still takes what it takes, but when hashing and the event loop want the
# same core, the loop wins: health probes and other requests stay fast during a flood of logins.
HASH_THREAD_NICENESS = 10


def _lower_this_threads_priority() -> None:
    """Run the calling thread, and the threads Argon2 starts from it, at a lower priority.

    Linux keeps a nice value per thread (setpriority with the thread's id); elsewhere the
    threads keep the process's priority.
    """
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    # Relative to where the thread starts (the process's own nice value, when it runs under
    # `nice`), capped at 19, the lowest. A sandbox may forbid it; the hashing still runs, at
    # the process's priority.
    with contextlib.suppress(OSError):
        lowered = min(os.getpriority(os.PRIO_PROCESS, thread) + HASH_THREAD_NICENESS, 19)
        os.setpriority(os.PRIO_PROCESS, thread, lowered)


class Passwords:
    """Hashes and verifies passwords at the configured Argon2id cost, a few at a time.

    Each hash holds PASSWORD_HASH_MEMORY_KIB of memory while it runs, so hashing has threads of
    its own, PASSWORD_HASH_CONCURRENCY of them (default: the number of CPUs): a burst of logins
    waits its turn instead of multiplying the memory, the shared thread pool stays free for
    everything else, and the threads run below the event loop's priority, so hashing never
    takes the core the loop needs.
    """

    def __init__(self, settings: Settings) -> None:
        argon2 = Argon2Hasher(
            time_cost=settings.PASSWORD_HASH_TIME_COST,
            memory_cost=settings.PASSWORD_HASH_MEMORY_KIB,
            parallelism=settings.PASSWORD_HASH_PARALLELISM,
        )
        self._hasher = PasswordHash((argon2, _LegacyBcrypt()))
        self._threads = ThreadPoolExecutor(
            max_workers=settings.PASSWORD_HASH_CONCURRENCY,
            thread_name_prefix="password-hash",
            initializer=_lower_this_threads_priority,
        )
        self._dummy_hash: str | None = None

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, work, *args)

    def close(self) -> None:
        """Let the hashing threads end (hashes still running finish first)."""
        self._threads.shutdown(wait=False, cancel_futures=True)

    def _hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def _verify_and_update(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        return self._hasher.verify_and_update(password, password_hash)

    def _verify_against_dummy(self, password: str) -> None:
        if self._dummy_hash is None:  # made once, in the worker thread too
            self._dummy_hash = self._hash(secrets.token_urlsafe(16))
        self._hasher.verify(password, self._dummy_hash)

    async def hash(self, password: str) -> str:
        return await self._run(self._hash, password)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """(matches, replacement hash when the stored one is outdated or not Argon2id)."""
        return await self._run(self._verify_and_update, password, password_hash)

    async def burn(self, password: str) -> None:
        """Spend what a real verify costs, so an unknown email is not told apart by timing."""
        await self._run(self._verify_against_dummy, password)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_version: int


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or not an access token."""


# Verified access tokens each app remembers (a few MB at most), so that a client's token is
# checked cryptographically once, not on each of its requests.
VERIFIED_TOKENS_KEPT = 4096


class Tokens:
    """Issues and checks access tokens with the keyring, lifetimes and names of the settings."""

    def __init__(self, settings: Settings) -> None:
        self._keys = {kid: key.get_secret_value() for kid, key in settings.jwt_keys.items()}
        self._signing_kid = settings.jwt_signing_kid
        self._algorithm = settings.JWT_ALGORITHM
        self._issuer = settings.JWT_ISSUER
        self._audience = settings.JWT_AUDIENCE
        self._leeway = timedelta(seconds=settings.JWT_LEEWAY_SECONDS)
        self._leeway_seconds = settings.JWT_LEEWAY_SECONDS
        # Failures raise, so only tokens that verified are kept.
        self._verified = lru_cache(maxsize=VERIFIED_TOKENS_KEPT)(self._verify)
        self.access_lifetime = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
        self.refresh_lifetime = timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS)
        # A login's absolute lifetime: refreshing never extends it past this.
        self.family_lifetime = timedelta(days=settings.REFRESH_TOKEN_FAMILY_MAX_DAYS)

    def create_access_token(
        self, user_id: uuid.UUID, *, version: int, now: datetime | None = None
    ) -> tuple[str, int]:
        """A signed access token for the user, and its lifetime in seconds.

        `version` is the user's token_version: bumping it (password change, deactivation)
        invalidates every access token issued before.
        """
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "type": ACCESS_TOKEN_TYPE,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.access_lifetime,
            "jti": uuid.uuid4().hex,
            "ver": version,
        }
        token = jwt.encode(
            claims,
            self._keys[self._signing_kid],
            algorithm=self._algorithm,
            headers={"kid": self._signing_kid},
        )
        return token, int(self.access_lifetime.total_seconds())

    def _verification_key(self, token: str) -> str:
        """The key the token names in its `kid` header; a missing or unknown kid is refused."""
        kid = jwt.get_unverified_header(token).get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidTokenError("unknown key id")
        return key

    def decode_access_token(self, token: str) -> AccessClaims:
        """The claims of a valid access token; InvalidTokenError for anything else.

        A client sends the same token with every request for its whole lifetime, so a verified
        token is remembered (at most VERIFIED_TOKENS_KEPT of them, per app). That is exact: what
        a token says never changes, and of the checks PyJWT made, only expiry can change with
        time (`nbf` and `iat` only get further in the past), so expiry is checked again on every
        use. Whether the account may still use it is checked in the database on every request
        all the same (`get_principal`).
        """
        claims, expires_at = self._verified(token)
        if expires_at <= time.time() - self._leeway_seconds:
            raise InvalidTokenError("token expired")
        return claims

    def _verify(self, token: str) -> tuple[AccessClaims, int]:
        if not _COMPACT_JWS.fullmatch(token):
            raise InvalidTokenError("not a compact JWS")
        try:
            claims = jwt.decode(
                token,
                self._verification_key(token),
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
            if claims["type"] != ACCESS_TOKEN_TYPE:
                raise InvalidTokenError("not an access token")
            version = claims["ver"]
            if type(version) is not int:  # a bool is an int to isinstance()
                raise InvalidTokenError("bad token version")
            user_id = uuid.UUID(str(claims["sub"]))
            return AccessClaims(user_id=user_id, token_version=version), int(claims["exp"])
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise InvalidTokenError(str(exc)) from exc


def new_secret_token() -> str:
    """256 random bits, URL-safe: a refresh token, or a password-reset or verification token."""
    return secrets.token_urlsafe(32)


def digest_secret_token(token: str) -> str:
    """What is stored of a `new_secret_token`: with 256 random bits, a plain SHA-256 is a
    safe lookup key (no salt or slow hash needed), and the database never holds the token."""
    return hashlib.sha256(token.encode()).hexdigest()

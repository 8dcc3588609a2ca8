"""Password hashing and access tokens.

Passwords: pwdlib with Argon2id for every new hash; bcrypt hashes (from an older system) still
verify and are replaced by Argon2id at the next successful login. Hashing is CPU-bound, so it
runs in a worker thread and never blocks the event loop.

Access tokens: short-lived JWTs (PyJWT), algorithm pinned, with `exp`, `iat`, `nbf`, `iss`,
`aud`, `sub`, `jti`, `type` and `ver` all required. Each names its signing key in the `kid`
header and is checked with that key of the keyring (settings.jwt_keys), so a new key can sign
while tokens signed with the old one still verify, until it is removed. Refresh tokens are
opaque random strings; only their SHA-256 digest is stored (see app/auth/service.py).
"""

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool

from app.core.config import get_settings

ACCESS_TOKEN_TYPE = "access"
REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "aud", "sub", "jti", "type", "ver")


Argon2Cost = tuple[int, int, int]  # time cost, memory in KiB, parallelism


def _argon2_cost() -> Argon2Cost:
    settings = get_settings()
    return (
        settings.PASSWORD_HASH_TIME_COST,
        settings.PASSWORD_HASH_MEMORY_KIB,
        settings.PASSWORD_HASH_PARALLELISM,
    )


@lru_cache
def _password_hash(cost: Argon2Cost) -> PasswordHash:
    time_cost, memory_kib, parallelism = cost
    return PasswordHash(
        (
            Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),
            BcryptHasher(),
        )
    )


@lru_cache
def _dummy_hash(cost: Argon2Cost) -> str:
    return _password_hash(cost).hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await run_in_threadpool(_password_hash(_argon2_cost()).hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """(matches, replacement hash when the stored one is outdated or not Argon2id)."""
    hasher = _password_hash(_argon2_cost())
    return await run_in_threadpool(hasher.verify_and_update, password, password_hash)


async def burn_password_check(password: str) -> None:
    """Spend what a real verify costs, so an unknown email is not told apart by timing.

    The dummy hash is made (once) in the worker thread too: hashing never runs on the loop.
    """
    cost = _argon2_cost()

    def verify_against_dummy() -> None:
        _password_hash(cost).verify(password, _dummy_hash(cost))

    await run_in_threadpool(verify_against_dummy)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    token_version: int


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired or not an access token."""


def create_access_token(
    user_id: uuid.UUID, *, version: int, now: datetime | None = None
) -> tuple[str, int]:
    """A signed access token for the user, and its lifetime in seconds.

    `version` is the user's token_version: bumping it (password change, deactivation)
    invalidates every access token issued before.
    """
    settings = get_settings()
    issued = now or datetime.now(UTC)
    lifetime = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    claims = {
        "sub": str(user_id),
        "type": ACCESS_TOKEN_TYPE,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
        "jti": uuid.uuid4().hex,
        "ver": version,
    }
    kid = settings.jwt_signing_kid
    token = jwt.encode(
        claims,
        settings.jwt_keys[kid].get_secret_value(),
        algorithm=settings.JWT_ALGORITHM,
        headers={"kid": kid},
    )
    return token, int(lifetime.total_seconds())


def _verification_key(token: str, keys: dict[str, SecretStr]) -> str:
    """The key the token names in its `kid` header; a missing or unknown kid is refused."""
    kid = jwt.get_unverified_header(token).get("kid")
    key = keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise InvalidTokenError("unknown key id")
    return key.get_secret_value()


def decode_access_token(token: str) -> AccessClaims:
    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            _verification_key(token, settings.jwt_keys),
            algorithms=[settings.JWT_ALGORITHM],
            audience=settings.JWT_AUDIENCE,
            issuer=settings.JWT_ISSUER,
            options={"require": list(REQUIRED_CLAIMS)},
        )
        if claims["type"] != ACCESS_TOKEN_TYPE:
            raise InvalidTokenError("not an access token")
        version = claims["ver"]
        if type(version) is not int:  # a bool is an int to isinstance()
            raise InvalidTokenError("bad token version")
        return AccessClaims(user_id=uuid.UUID(str(claims["sub"])), token_version=version)
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidTokenError(str(exc)) from exc


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def digest_refresh_token(token: str) -> str:
    """Refresh tokens carry 256 random bits, so a plain SHA-256 is a safe lookup key."""
    return hashlib.sha256(token.encode()).hexdigest()

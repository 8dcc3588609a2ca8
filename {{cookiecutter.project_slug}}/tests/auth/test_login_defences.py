"""Login defences: nothing tells an unknown email from a wrong password, an oversized
password is refused before any hashing, and failed logins are limited without locking the
account's owner out."""

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import argon2
import bcrypt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import PROBLEM_JSON
from app.core.security import Passwords
from app.users.models import User
from app.users.schemas import PASSWORD_MAX_BYTES, PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from tests.conftest import client_at
from tests.factories import DEFAULT_PASSWORD, auth_headers, create_user

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/users/me"
EMOJI = "\N{GRINNING FACE}"  # one character, four bytes in UTF-8


@dataclass
class Argon2Calls:
    """Every Argon2 hash and verify the app ran, with the hash each verify checked against."""

    hashes: int = 0
    verified: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.hashes = 0
        self.verified.clear()


@pytest.fixture
def argon2_calls(monkeypatch: pytest.MonkeyPatch) -> Argon2Calls:
    """Counts calls into argon2-cffi, the library that does the work; each call still runs."""
    calls = Argon2Calls()
    real_hash, real_verify = argon2.PasswordHasher.hash, argon2.PasswordHasher.verify

    def counted_hash(self: argon2.PasswordHasher, *args: Any, **kwargs: Any) -> str:
        calls.hashes += 1
        return real_hash(self, *args, **kwargs)

    def counted_verify(self: argon2.PasswordHasher, hash: str | bytes, password: Any) -> bool:
        calls.verified.append(hash if isinstance(hash, str) else hash.decode())
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "hash", counted_hash)
    monkeypatch.setattr(argon2.PasswordHasher, "verify", counted_verify)
    return calls


async def test_every_failed_login_costs_one_verify_at_the_same_cost(
    client: AsyncClient,
    session: AsyncSession,
    passwords: Passwords,
    user: User,
    argon2_calls: Argon2Calls,
) -> None:
    """Unknown email, wrong password and inactive account each run exactly one Argon2 verify,
    against a real hash with the very parameters of a real user's hash, and hash nothing.

    Same operation, same parameters, same count means the same work, and this holds on every
    run. A wall-clock comparison would measure the same thing through scheduler and cache
    noise, and could flake on a busy machine, so it is not used.
    """
    inactive = await create_user(session, is_active=False)
    attempts = {
        "unknown email": ("nobody@example.com", DEFAULT_PASSWORD),
        "wrong password": (user.email, "not the password at all"),
        "inactive account": (inactive.email, DEFAULT_PASSWORD),
    }
    # The decoy hash for unknown emails is made once per process; make it before counting.
    await client.post(LOGIN, data={"username": "warm-up@example.com", "password": "x"})
    reference = argon2.extract_parameters(await passwords.hash("any password"))

    bodies = {}
    for name, (email, password) in attempts.items():
        argon2_calls.reset()
        response = await client.post(LOGIN, data={"username": email, "password": password})
        assert response.status_code == 401, name
        bodies[name] = (response.json(), response.headers["www-authenticate"])
        assert len(argon2_calls.verified) == 1, name
        assert argon2_calls.hashes == 0, name
        assert argon2.extract_parameters(argon2_calls.verified[0]) == reference, name

    assert len({repr(body) for body in bodies.values()}) == 1
    assert bodies["unknown email"][0]["code"] == "invalid_credentials"


async def test_a_successful_login_also_costs_one_verify(
    client: AsyncClient, user: User, argon2_calls: Argon2Calls
) -> None:
    """The baseline the failures are compared with."""
    argon2_calls.reset()
    response = await client.post(LOGIN, data={"username": user.email, "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert argon2_calls.verified == [user.password_hash]


@pytest.mark.parametrize(
    "long",
    [
        "p" * (PASSWORD_MAX_LENGTH + 1),
        "p" * 10_000,
        EMOJI * (PASSWORD_MAX_BYTES // len(EMOJI.encode()) + 1),  # few characters, many bytes
    ],
    ids=["characters", "far-too-long", "bytes"],
)
@pytest.mark.parametrize("where", ["register", "login", "change-new", "change-current"])
async def test_an_oversized_password_is_422_and_never_hashed(
    client: AsyncClient,
    user_headers: dict[str, str],
    argon2_calls: Argon2Calls,
    where: str,
    long: str,
) -> None:
    argon2_calls.reset()
    if where == "register":
        response = await client.post(REGISTER, json={"email": "a@example.com", "password": long})
    elif where == "login":
        response = await client.post(LOGIN, data={"username": "a@example.com", "password": long})
    else:
        change = {"password": "a new password", "current_password": DEFAULT_PASSWORD}
        change["password" if where == "change-new" else "current_password"] = long
        response = await client.patch(ME, headers=user_headers, json=change)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    assert long not in response.text
    assert argon2_calls.hashes == 0
    assert argon2_calls.verified == []


@pytest.mark.parametrize("where", ["register", "change-new", "change-current"])
async def test_a_password_that_is_not_unicode_text_is_422(
    client: AsyncClient, user_headers: dict[str, str], argon2_calls: Argon2Calls, where: str
) -> None:
    """JSON can carry lone surrogates ("\\ud800"), which UTF-8, and so the hasher, cannot hold;
    pydantic refuses them. (A form body cannot: its undecodable bytes arrive as U+FFFD.)"""
    bad = "\ud800" * PASSWORD_MIN_LENGTH
    if where == "register":
        path, method, body = REGISTER, "POST", {"email": "a@example.com", "password": bad}
    else:
        body = {"password": "a new password", "current_password": DEFAULT_PASSWORD}
        body["password" if where == "change-new" else "current_password"] = bad
        path, method = ME, "PATCH"
    response = await client.request(
        method,
        path,
        content=json.dumps(body),  # ASCII, the surrogates escaped
        headers={**user_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert argon2_calls.hashes == 0
    assert argon2_calls.verified == []


@pytest.mark.parametrize(
    "longest",
    ["p" * PASSWORD_MAX_LENGTH, EMOJI * (PASSWORD_MAX_BYTES // len(EMOJI.encode()))],
    ids=["characters", "bytes"],
)
async def test_a_password_of_the_maximum_length_works(client: AsyncClient, longest: str) -> None:
    registered = await client.post(REGISTER, json={"email": "max@example.com", "password": longest})
    assert registered.status_code == 201
    logged_in = await client.post(LOGIN, data={"username": "max@example.com", "password": longest})
    assert logged_in.status_code == 200


ATTACKER, OWNER = "198.51.100.66", "203.0.113.10"


async def _login_from(app: FastAPI, address: str, email: str, password: str) -> int:
    async with client_at(app, address) as client:
        response = await client.post(LOGIN, data={"username": email, "password": password})
        return response.status_code


async def test_wrong_guesses_for_an_account_do_not_lock_its_owner_out(
    app_with: Callable[..., FastAPI], user: User
) -> None:
    """Ten wrong passwords for the victim from one address: that address is refused, even with
    the right password, while the owner, from an address of their own, logs in."""
    app = app_with(RATE_LIMIT_LOGIN_USERNAME="5/minute")
    guesses = [await _login_from(app, ATTACKER, user.email, f"guess {n}") for n in range(10)]
    assert guesses == [401] * 5 + [429] * 5
    assert await _login_from(app, OWNER, user.email, DEFAULT_PASSWORD) == 200
    assert await _login_from(app, ATTACKER, user.email, DEFAULT_PASSWORD) == 429
    async with client_at(app, ATTACKER) as client:
        refused = await client.post(
            LOGIN, data={"username": user.email, "password": DEFAULT_PASSWORD}
        )
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


async def test_a_wrong_guess_from_a_new_address_is_counted_there(
    app_with: Callable[..., FastAPI], user: User
) -> None:
    """Spreading guesses over addresses buys one guess per address: each failure marks its
    address, and a marked address is refused while the account is over its limit."""
    app = app_with(RATE_LIMIT_LOGIN_USERNAME="2/minute")
    addresses = [f"198.51.100.{n}" for n in range(1, 4)]
    assert [await _login_from(app, a, user.email, "wrong") for a in addresses] == [401] * 3
    assert [await _login_from(app, a, user.email, "wrong") for a in addresses] == [429] * 3
    assert await _login_from(app, OWNER, user.email, DEFAULT_PASSWORD) == 200


async def test_failed_logins_expire_with_their_window(
    app_with: Callable[..., FastAPI], user: User
) -> None:
    app = app_with(RATE_LIMIT_LOGIN_USERNAME="2 per 1 second")
    assert [await _login_from(app, ATTACKER, user.email, "wrong") for _ in "abc"] == [
        401,
        401,
        429,
    ]
    await asyncio.sleep(1.2)
    assert await _login_from(app, ATTACKER, user.email, "wrong") == 401
    assert await _login_from(app, ATTACKER, user.email, DEFAULT_PASSWORD) == 200


async def test_a_successful_login_is_not_a_failure(
    app_with: Callable[..., FastAPI], user: User
) -> None:
    app = app_with(RATE_LIMIT_LOGIN_USERNAME="2/minute")
    for _ in range(4):
        assert await _login_from(app, ATTACKER, user.email, DEFAULT_PASSWORD) == 200
    statuses = [await _login_from(app, ATTACKER, user.email, "wrong") for _ in "abc"]
    assert statuses == [401, 401, 429]


# --- Accounts with a legacy bcrypt hash ---------------------------------------------------------

LEGACY_PASSWORD = "a legacy password"
# Past the 72 bytes bcrypt reads (and bcrypt 5 refuses), within PASSWORD_MAX_BYTES.
PAST_BCRYPT = EMOJI * 19


@pytest.fixture
async def legacy_user(session: AsyncSession) -> User:
    """An account carried over from an older system, with a bcrypt hash."""
    user = await create_user(session)
    user.password_hash = bcrypt.hashpw(LEGACY_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    await session.commit()
    return user


async def test_a_legacy_account_logs_in_and_is_rehashed(
    client: AsyncClient, session: AsyncSession, legacy_user: User
) -> None:
    response = await client.post(
        LOGIN, data={"username": legacy_user.email, "password": LEGACY_PASSWORD}
    )
    assert response.status_code == 200
    await session.refresh(legacy_user)
    assert legacy_user.password_hash.startswith("$argon2id$")


@pytest.mark.parametrize("where", ["login", "change-current"])
async def test_a_password_past_bcrypts_limit_is_a_mismatch_for_every_account(
    client: AsyncClient, user: User, legacy_user: User, where: str
) -> None:
    """For a bcrypt account as for an Argon2id one: the same refusal, not a 500 that would
    tell the legacy accounts apart."""
    assert len(PAST_BCRYPT.encode()) > 72
    bodies = []
    for account in (user, legacy_user):
        if where == "login":
            response = await client.post(
                LOGIN, data={"username": account.email, "password": PAST_BCRYPT}
            )
            expected = 401
        else:
            change = {"password": "a new password", "current_password": PAST_BCRYPT}
            response = await client.patch(ME, headers=auth_headers(account), json=change)
            expected = 403
        assert response.status_code == expected, response.text
        bodies.append(response.json())
    assert bodies[0] == bodies[1]

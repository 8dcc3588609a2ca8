"""Each app takes its settings from `create_app(settings)` alone: token lifetimes, keyring,
leeway and hashing cost are those of the app that issues or checks, never the process's."""

import ast
import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import argon2
import jwt
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import RefreshToken
from app.core.config import Settings
from app.core.security import InvalidTokenError, Tokens
from app.users.models import User
from tests import PROJECT_DIR
from tests.conftest import client_at
from tests.factories import login

ME = "/api/v1/users/me"
REGISTER = "/api/v1/auth/register"
OTHER_KEY = "another-deployment-key-0123456789abcdef0123456789"

AppWith = Callable[..., FastAPI]


async def _status(client: AsyncClient, token: str) -> int:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_token_lifetimes_are_the_apps_own(
    app_with: AppWith, session: AsyncSession, user: User
) -> None:
    app = app_with(ACCESS_TOKEN_EXPIRE_MINUTES=1, REFRESH_TOKEN_EXPIRE_DAYS=2)
    async with client_at(app) as client:
        tokens = await login(client, user.email)
    assert tokens["expires_in"] == 60
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    stored = await session.scalar(select(RefreshToken).where(RefreshToken.user_id == user.id))
    assert stored is not None
    assert stored.expires_at - stored.issued_at == timedelta(days=2)


async def test_an_app_verifies_only_tokens_of_its_own_keyring(
    client: AsyncClient, app_with: AppWith, user: User
) -> None:
    async with client_at(app_with(SECRET_KEY=OTHER_KEY)) as other:
        theirs = (await login(other, user.email))["access_token"]
        ours = (await login(client, user.email))["access_token"]
        assert await _status(other, theirs) == 200
        assert await _status(client, ours) == 200
        assert await _status(other, ours) == 401
        assert await _status(client, theirs) == 401


async def test_the_hash_cost_is_the_apps_own(app_with: AppWith, session: AsyncSession) -> None:
    app = app_with(PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_KIB=16)
    async with client_at(app) as client:
        response = await client.post(
            REGISTER, json={"email": "costly@example.com", "password": "a long password"}
        )
    assert response.status_code == 201
    stored = await session.scalar(
        select(User.password_hash).where(User.email == "costly@example.com")
    )
    assert stored is not None
    parameters = argon2.extract_parameters(stored)
    assert (parameters.time_cost, parameters.memory_cost) == (2, 16)


def test_no_module_on_the_request_path_reads_the_process_settings() -> None:
    """Only the entry points may: app.main (its default app), the CLI, the production server
    (app/serve.py), the jobs worker (app/jobs/worker.py) and config itself."""
    allowed = {
        "app/main.py",
        "app/cli.py",
        "app/serve.py",
        "app/jobs/worker.py",
        "app/core/config.py",
    }
    readers = set()
    for path in (PROJECT_DIR / "app").rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        names |= {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        if "get_settings" in names:
            readers.add(path.relative_to(PROJECT_DIR).as_posix())
    assert readers <= allowed, readers - allowed


# --- Clock skew: JWT_LEEWAY_SECONDS on exp, nbf and iat --------------------------------------


def _token(app: FastAPI, user: User, *, shift: timedelta) -> str:
    """A token as an instance whose clock is `shift` off would issue it."""
    tokens: Tokens = app.state.tokens
    token, _ = tokens.create_access_token(
        user.id, version=user.token_version, now=datetime.now(UTC) + shift
    )
    return token


@pytest.mark.parametrize(
    ("leeway", "shift", "status"),
    [
        (30, timedelta(seconds=10), 200),  # nbf and iat 10 s ahead: within the leeway
        (30, timedelta(minutes=10), 401),  # 10 minutes ahead: refused
        (0, timedelta(seconds=10), 401),  # no leeway: refused
        (30, -timedelta(minutes=15, seconds=10), 200),  # expired 10 s ago: within
        (30, -timedelta(minutes=25), 401),  # expired 10 minutes ago: refused
    ],
    ids=["ahead-10s", "ahead-10min", "ahead-10s-no-leeway", "expired-10s", "expired-10min"],
)
async def test_a_little_clock_skew_is_tolerated(
    app_with: AppWith, user: User, leeway: int, shift: timedelta, status: int
) -> None:
    app = app_with(JWT_LEEWAY_SECONDS=leeway, ACCESS_TOKEN_EXPIRE_MINUTES=15)
    async with client_at(app) as client:
        assert await _status(client, _token(app, user, shift=shift)) == status


async def test_a_remembered_token_still_expires() -> None:
    """Verified tokens are remembered, but each use checks expiry again: a token that verified
    while it was valid is refused once it has expired."""
    tokens = Tokens(Settings(ACCESS_TOKEN_EXPIRE_MINUTES=1, JWT_LEEWAY_SECONDS=0))
    user_id = uuid.uuid4()
    issued = datetime.now(UTC) - timedelta(seconds=59)  # one second of life left
    token, _ = tokens.create_access_token(user_id, version=0, now=issued)
    assert tokens.decode_access_token(token).user_id == user_id  # verified, and remembered
    await asyncio.sleep(1.2)
    with pytest.raises(InvalidTokenError):
        tokens.decode_access_token(token)


def test_a_token_that_failed_is_not_remembered_as_valid() -> None:
    """A refusal is never cached as an acceptance: the same bad token is refused every time."""
    tokens = Tokens(Settings())
    token, _ = tokens.create_access_token(uuid.uuid4(), version=0)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            tokens.decode_access_token(forged)
    assert tokens.decode_access_token(token).token_version == 0


@pytest.mark.parametrize("suffix", ["\xff", "\u00e9", " ", "=", "%41", ".", "\x00"])
def test_a_valid_token_with_anything_appended_is_refused_before_pyjwt(suffix: str) -> None:
    """Only three base64url segments joined by dots get to PyJWT: its older releases skipped
    characters outside the alphabet, so the valid token in front would have verified."""
    tokens = Tokens(Settings())
    token, _ = tokens.create_access_token(uuid.uuid4(), version=0)
    with pytest.raises(InvalidTokenError, match="not a compact JWS"):
        tokens.decode_access_token(token + suffix)
    assert tokens.decode_access_token(token).token_version == 0

"""Signing-key rotation: each access token names its key (`kid`); every key of the keyring
verifies, the active one signs. Each step below is one deployment: an app of its own, built
from its own settings."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import jwt
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.config import SECRET_KEY_KID, get_settings
from app.users.models import User
from tests.conftest import client_at
from tests.factories import login

ME = "/api/v1/users/me"
NEW_KEY = "a-new-signing-key-rolled-in-for-rotation-0123456789"
OLD_KEY = get_settings().SECRET_KEY.get_secret_value()
BOTH_KEYS = {
    "JWT_KEYS": f"{SECRET_KEY_KID}:{OLD_KEY},2026-07:{NEW_KEY}",
    "JWT_ACTIVE_KID": "2026-07",
}

AppWith = Callable[..., FastAPI]


@asynccontextmanager
async def deployed(app_with: AppWith, **settings: Any) -> AsyncIterator[AsyncClient]:
    async with client_at(app_with(**settings)) as client:
        yield client


async def _status(client: AsyncClient, token: str) -> int:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_tokens_name_their_key(client: AsyncClient, user: User) -> None:
    tokens = await login(client, user.email)
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == SECRET_KEY_KID


async def test_a_new_key_rolls_in_and_the_old_one_rolls_out(
    client: AsyncClient, user: User, app_with: AppWith
) -> None:
    old_token = (await login(client, user.email))["access_token"]

    # 1. Both keys in the ring, the new one signing: old tokens still work.
    async with deployed(app_with, **BOTH_KEYS) as both:
        new_token = (await login(both, user.email))["access_token"]
        assert jwt.get_unverified_header(new_token)["kid"] == "2026-07"
        assert await _status(both, old_token) == 200
        assert await _status(both, new_token) == 200

    # 2. Once the old tokens have expired, the old key goes: its tokens are refused.
    async with deployed(app_with, JWT_KEYS=f"2026-07:{NEW_KEY}") as new_only:
        assert await _status(new_only, old_token) == 401
        assert await _status(new_only, new_token) == 200


async def test_a_token_is_checked_against_the_key_it_names(user: User, app_with: AppWith) -> None:
    """Not against any key of the ring: signed with one key but naming the other, it fails."""
    async with deployed(app_with, **BOTH_KEYS) as client:
        token = (await login(client, user.email))["access_token"]
        claims = jwt.decode(token, options={"verify_signature": False})
        signed_as = {
            kid: jwt.encode(claims, NEW_KEY, headers={"kid": kid}) for kid in ("2026-07", "main")
        }
        assert await _status(client, signed_as["2026-07"]) == 200
        assert await _status(client, signed_as["main"]) == 401

"""Signing-key rotation: each access token names its key (`kid`); every key of the keyring
verifies, the active one signs. Each step below is one deployment's settings."""

from collections.abc import Callable
from typing import Any

import jwt
import pytest
from httpx import AsyncClient

from app.core import security
from app.core.config import SECRET_KEY_KID, Settings, get_settings
from app.users.models import User
from tests.factories import login

ME = "/api/v1/users/me"
NEW_KEY = "a-new-signing-key-rolled-in-for-rotation-0123456789"

Deploy = Callable[..., None]


@pytest.fixture
def deploy(monkeypatch: pytest.MonkeyPatch) -> Deploy:
    """Replace the settings the token code reads, as a restart with new settings would."""

    def use(**values: Any) -> None:
        settings = Settings(_env_file=None, **values)
        monkeypatch.setattr(security, "get_settings", lambda: settings)

    return use


async def _status(client: AsyncClient, token: str) -> int:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def test_tokens_name_their_key(client: AsyncClient, user: User) -> None:
    tokens = await login(client, user.email)
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == SECRET_KEY_KID


async def test_a_new_key_rolls_in_and_the_old_one_rolls_out(
    client: AsyncClient, user: User, deploy: Deploy
) -> None:
    old_key = get_settings().SECRET_KEY.get_secret_value()
    old_token = (await login(client, user.email))["access_token"]

    # 1. Both keys in the ring, the new one signing: old tokens still work.
    deploy(JWT_KEYS=f"{SECRET_KEY_KID}:{old_key},2026-07:{NEW_KEY}", JWT_ACTIVE_KID="2026-07")
    new_token = (await login(client, user.email))["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == "2026-07"
    assert await _status(client, old_token) == 200
    assert await _status(client, new_token) == 200

    # 2. Once the old tokens have expired, the old key goes: its tokens are refused.
    deploy(JWT_KEYS=f"2026-07:{NEW_KEY}")
    assert await _status(client, old_token) == 401
    assert await _status(client, new_token) == 200


async def test_a_token_is_checked_against_the_key_it_names(
    client: AsyncClient, user: User, deploy: Deploy
) -> None:
    """Not against any key of the ring: signed with one key but naming the other, it fails."""
    old_key = get_settings().SECRET_KEY.get_secret_value()
    deploy(JWT_KEYS=f"{SECRET_KEY_KID}:{old_key},2026-07:{NEW_KEY}", JWT_ACTIVE_KID="2026-07")
    token = (await login(client, user.email))["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    signed_as = {
        kid: jwt.encode(claims, NEW_KEY, headers={"kid": kid}) for kid in ("2026-07", "main")
    }
    assert await _status(client, signed_as["2026-07"]) == 200
    assert await _status(client, signed_as["main"]) == 401

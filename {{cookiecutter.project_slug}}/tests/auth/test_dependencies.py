"""The bearer-token chain, attacked from the outside: every bad token is a 401 problem."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import SECRET_KEY_KID, get_settings
from app.core.errors import PROBLEM_JSON
from app.core.security import create_access_token
from app.users.models import User
from tests.factories import auth_headers

ME = "/api/v1/users/me"


def _claims(user: User, **overrides: object) -> dict[str, object]:
    settings = get_settings()
    now = datetime.now(UTC)
    claims: dict[str, object] = {
        "sub": str(user.id),
        "type": "access",
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
        "ver": user.token_version,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _sign(claims: dict[str, object], key: str | None = None) -> str:
    secret = key or get_settings().SECRET_KEY.get_secret_value()
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": SECRET_KEY_KID})


def _unsigned(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data, default=lambda value: int(value.timestamp())).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


async def _status(client: AsyncClient, token: str) -> int:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    if response.status_code == 401:
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.headers["www-authenticate"] == "Bearer"
    return response.status_code


async def test_valid_token_is_accepted(client: AsyncClient, user: User) -> None:
    assert await _status(client, _sign(_claims(user))) == 200


async def test_missing_authorization_header_is_401(client: AsyncClient) -> None:
    response = await client.get(ME)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not.a.jwt", "Bearer ../../etc/passwd"],
)
async def test_garbage_authorization_header_is_401(client: AsyncClient, header: str) -> None:
    response = await client.get(ME, headers={"Authorization": header})
    assert response.status_code == 401


async def test_oversized_token_is_rejected_without_error(client: AsyncClient) -> None:
    response = await client.get(ME, headers={"Authorization": "Bearer " + "a" * 100_000})
    assert response.status_code == 401


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": datetime.now(UTC) - timedelta(seconds=1)},
        {"nbf": datetime.now(UTC) + timedelta(minutes=5)},
        {"aud": "someone-else"},
        {"iss": "someone-else"},
        {"type": "refresh"},
        {"ver": "0"},
        {"sub": "not-a-uuid"},
        {"sub": str(uuid.uuid4())},
    ],
    ids=["expired", "not-yet-valid", "audience", "issuer", "type", "version-type", "sub", "nobody"],
)
async def test_token_with_bad_claim_is_401(
    client: AsyncClient, user: User, overrides: dict[str, object]
) -> None:
    assert await _status(client, _sign(_claims(user, **overrides))) == 401


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "type", "ver"])
async def test_token_missing_a_required_claim_is_401(
    client: AsyncClient, user: User, claim: str
) -> None:
    claims = _claims(user)
    del claims[claim]
    assert await _status(client, _sign(claims)) == 401


async def test_token_signed_with_another_key_is_401(client: AsyncClient, user: User) -> None:
    assert await _status(client, _sign(_claims(user), key="another-key-" + "x" * 40)) == 401


async def test_unsigned_alg_none_token_is_401(client: AsyncClient, user: User) -> None:
    assert await _status(client, _unsigned(_claims(user))) == 401


async def test_tampered_payload_is_401(client: AsyncClient, user: User, admin: User) -> None:
    header, _, signature = _sign(_claims(user)).split(".")
    forged = _unsigned(_claims(admin)).split(".")[1]
    assert await _status(client, f"{header}.{forged}.{signature}") == 401


async def test_token_of_a_deactivated_user_is_401(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    headers = auth_headers(user)
    user.is_active = False
    await session.flush()
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401


async def test_token_of_a_deleted_user_is_401(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    headers = auth_headers(user)
    await session.delete(user)
    await session.flush()
    response = await client.get(ME, headers=headers)
    assert response.status_code == 401


async def test_token_from_before_a_version_bump_is_401(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    old, _ = create_access_token(user.id, version=user.token_version)
    user.token_version += 1
    await session.flush()
    assert await _status(client, old) == 401

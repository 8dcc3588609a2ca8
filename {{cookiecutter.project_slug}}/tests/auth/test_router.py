from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient
from pwdlib.hashers.bcrypt import BcryptHasher
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import RefreshToken
from app.core.errors import PROBLEM_JSON
from app.users.models import User
from tests.factories import DEFAULT_PASSWORD, create_user, login

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
ME = "/api/v1/users/me"


async def test_register_creates_user_with_lowercased_email(client: AsyncClient) -> None:
    response = await client.post(
        REGISTER,
        json={"email": "New.Person@Example.COM", "password": "s3cret-enough", "full_name": "N P"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "new.person@example.com"
    assert body["role"] == "user"
    assert body["is_active"] is True
    assert "password" not in body
    assert "password_hash" not in body


async def test_register_duplicate_email_in_other_case_is_409(
    client: AsyncClient, user: User
) -> None:
    response = await client.post(
        REGISTER, json={"email": user.email.upper(), "password": "another-password"}
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["code"] == "email_already_registered"


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "password": "long-enough"},
        {"email": "a@example.com", "password": "short"},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": "long-enough", "full_name": "x" * 101},
        {"email": "a@example.com", "password": "long-enough", "role": "admin"},
        {"email": "a@example.com", "password": "long-enough", "id": "abc"},
    ],
    ids=["bad-email", "short-password", "no-password", "long-name", "role", "id"],
)
async def test_register_rejects_invalid_payload(
    client: AsyncClient, payload: dict[str, str]
) -> None:
    response = await client.post(REGISTER, json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"]
    # The submitted values are never echoed back (one of them may be a password).
    assert "long-enough" not in response.text


async def test_login_returns_a_working_token_pair(client: AsyncClient, user: User) -> None:
    tokens = await login(client, user.email)
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    me = await client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200
    assert me.json()["id"] == str(user.id)


async def test_login_email_is_case_insensitive(client: AsyncClient, user: User) -> None:
    await login(client, user.email.upper())


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: AsyncClient, user: User
) -> None:
    wrong = await client.post(LOGIN, data={"username": user.email, "password": "not-it-at-all"})
    unknown = await client.post(
        LOGIN, data={"username": "nobody@example.com", "password": "not-it-at-all"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json()["code"] == "invalid_credentials"
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_inactive_user_cannot_log_in(client: AsyncClient, session: AsyncSession) -> None:
    inactive = await create_user(session, is_active=False)
    response = await client.post(
        LOGIN, data={"username": inactive.email, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


@pytest.mark.parametrize(
    "form",
    [
        {"username": "a@example.com"},
        {"username": "a@example.com", "password": "long-enough", "grant_type": "implicit"},
    ],
    ids=["no-password", "bad-grant-type"],
)
async def test_login_rejects_invalid_form(client: AsyncClient, form: dict[str, str]) -> None:
    response = await client.post(LOGIN, data=form)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_login_replaces_a_legacy_bcrypt_hash_with_argon2id(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    user.password_hash = BcryptHasher(rounds=4).hash(DEFAULT_PASSWORD)
    await session.flush()

    await login(client, user.email)

    await session.refresh(user)
    assert user.password_hash.startswith("$argon2id$")
    await login(client, user.email)


async def test_refresh_rotates_the_pair(client: AsyncClient, user: User) -> None:
    first = await login(client, user.email)
    response = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
    assert response.status_code == 200
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    me = await client.get(ME, headers={"Authorization": f"Bearer {second['access_token']}"})
    assert me.status_code == 200


async def test_token_responses_are_never_cached(client: AsyncClient, user: User) -> None:
    logged_in = await client.post(
        "/api/v1/auth/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    refreshed = await client.post(
        REFRESH, json={"refresh_token": logged_in.json()["refresh_token"]}
    )
    for response in (logged_in, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"


async def test_refresh_with_unknown_token_is_401(client: AsyncClient) -> None:
    response = await client.post(REFRESH, json={"refresh_token": "made-up"})
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    "payload",
    [{}, {"refresh_token": ""}, {"refresh_token": "x" * 257}, {"refresh_token": 5}],
    ids=["missing", "empty", "too-long", "not-a-string"],
)
async def test_refresh_rejects_invalid_payload(client: AsyncClient, payload: object) -> None:
    response = await client.post(REFRESH, json=payload)
    assert response.status_code == 422


async def test_expired_refresh_token_is_401(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    tokens = await login(client, user.email)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401


async def test_refresh_fails_for_a_deactivated_user(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    tokens = await login(client, user.email)
    user.is_active = False
    await session.flush()
    response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401


async def test_logout_revokes_the_session(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    tokens = await login(client, user.email)
    response = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 204
    assert response.content == b""

    revoked = await session.scalars(
        select(RefreshToken.revoked_at).where(RefreshToken.user_id == user.id)
    )
    assert all(value is not None for value in revoked)
    again = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401
    # Logging out twice is harmless.
    twice = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]})
    assert twice.status_code == 204


async def test_logout_with_unknown_token_is_401(client: AsyncClient) -> None:
    response = await client.post(LOGOUT, json={"refresh_token": "made-up"})
    assert response.status_code == 401


async def test_logout_all_ends_every_login_of_the_user_only(
    client: AsyncClient, session: AsyncSession, user: User
) -> None:
    here, elsewhere = await login(client, user.email), await login(client, user.email)
    other_user = await create_user(session)
    bystander = await login(client, other_user.email)

    response = await client.post(
        LOGOUT_ALL, headers={"Authorization": f"Bearer {here['access_token']}"}
    )
    assert response.status_code == 204
    assert response.content == b""

    live = await session.scalars(
        select(RefreshToken).where(
            RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None)
        )
    )
    assert live.all() == []
    for tokens in (here, elsewhere):
        me = await client.get(ME, headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 401
        refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401
    # Another user is untouched, and the user can sign in again.
    kept = await client.post(REFRESH, json={"refresh_token": bystander["refresh_token"]})
    assert kept.status_code == 200
    await login(client, user.email)

"""Typed factories. Users are made through the real service, so hashing is real too."""

import itertools
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import get_settings
from app.core.security import Passwords, Tokens
from app.users import service as users_service
from app.users.models import Role, User
from app.users.schemas import UserCreate

DEFAULT_PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def unique_email() -> str:
    return f"user{next(_counter)}@example.com"


async def create_user(
    session: AsyncSession,
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    full_name: str | None = None,
    role: Role = Role.USER,
    is_active: bool = True,
    passwords: Passwords | None = None,
) -> User:
    """A stored account, committed as one made before the test's requests would be (the
    commit ends a savepoint of the test's transaction, which is still undone afterwards)."""
    user = await users_service.create_user(
        session,
        passwords=passwords or Passwords(get_settings()),
        data=UserCreate(email=email or unique_email(), password=password, full_name=full_name),
        role=role,
    )
    user.is_active = is_active
    await session.commit()
    return user


def auth_headers(user: User, tokens: Tokens | None = None) -> dict[str, str]:
    """Signed by `tokens`, by default with the run's settings (those of `create_app()`)."""
    token, _ = (tokens or Tokens(get_settings())).create_access_token(
        user.id, version=user.token_version
    )
    return {"Authorization": f"Bearer {token}"}


async def login(
    client: AsyncClient, email: str, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    """Logs in through the API; returns the token pair as the client sees it."""
    response = await client.post(
        "/api/v1/auth/login", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens

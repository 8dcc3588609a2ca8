"""Text a database cannot store, or a field should not hold, is a 422 before any query runs.

The suite runs on the database the service was generated for, so on PostgreSQL (where a NUL
character used to fail inside asyncpg with a 500) and on SQLite alike.
"""

from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import PROBLEM_JSON
from app.core.schemas import FORBIDDEN_CHARACTER
from app.users.models import User
from tests.factories import DEFAULT_PASSWORD, create_user

NUL = "\x00"


def assert_refused(response: Response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    errors = response.json()["errors"]
    assert {"loc": ["body", field], "type": FORBIDDEN_CHARACTER} in [
        {"loc": error["loc"], "type": error["type"]} for error in errors
    ], errors


# (field, a valid value with a NUL inside, the rest of a valid payload)
REGISTER_FIELDS = [
    ("email", f"new{NUL}@example.com", {"password": DEFAULT_PASSWORD}),
    ("password", f"long{NUL}enough", {"email": "new@example.com"}),
    (
        "full_name",
        f"Ada{NUL}Lovelace",
        {"email": "new@example.com", "password": DEFAULT_PASSWORD},
    ),
]


@pytest.mark.parametrize(("field", "value", "rest"), REGISTER_FIELDS, ids=lambda v: str(v)[:9])
async def test_register_refuses_nul(
    client: AsyncClient, field: str, value: str, rest: dict[str, str]
) -> None:
    response = await client.post("/api/v1/auth/register", json={field: value, **rest})
    assert_refused(response, field)


@pytest.mark.parametrize(
    ("field", "form"),
    [
        ("username", {"username": f"user{NUL}@example.com", "password": DEFAULT_PASSWORD}),
        ("password", {"username": "user@example.com", "password": f"x{NUL}y"}),
        ("scope", {"username": "user@example.com", "password": "x", "scope": f"a{NUL}"}),
        ("client_id", {"username": "user@example.com", "password": "x", "client_id": NUL}),
    ],
    ids=["username", "password", "scope", "client_id"],
)
async def test_login_refuses_nul(
    client: AsyncClient, user: User, field: str, form: dict[str, str]
) -> None:
    response = await client.post("/api/v1/auth/login", data=form)
    assert_refused(response, field)


@pytest.mark.parametrize("path", ["/api/v1/auth/refresh", "/api/v1/auth/logout"])
async def test_refresh_token_refuses_nul(client: AsyncClient, path: str) -> None:
    response = await client.post(path, json={"refresh_token": f"token{NUL}"})
    assert_refused(response, "refresh_token")


@pytest.mark.parametrize(
    ("field", "payload"),
    [
        ("full_name", {"full_name": f"Ada{NUL}"}),
        ("password", {"password": f"new{NUL}password", "current_password": DEFAULT_PASSWORD}),
        ("current_password", {"password": "new password", "current_password": f"x{NUL}"}),
    ],
    ids=["full_name", "password", "current_password"],
)
async def test_update_me_refuses_nul(
    client: AsyncClient, user_headers: dict[str, str], field: str, payload: dict[str, str]
) -> None:
    response = await client.patch("/api/v1/users/me", headers=user_headers, json=payload)
    assert_refused(response, field)


async def test_admin_update_refuses_nul(
    client: AsyncClient, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    target = await create_user(session)
    response = await client.patch(
        f"/api/v1/users/{target.id}", headers=admin_headers, json={"full_name": f"a{NUL}b"}
    )
    assert_refused(response, "full_name")


@pytest.mark.parametrize("full_name", ["Ada\nLovelace", "Ada\rLovelace", "Ada\u009bLovelace"])
async def test_a_name_is_one_line(
    client: AsyncClient, user_headers: dict[str, str], full_name: str
) -> None:
    response = await client.patch(
        "/api/v1/users/me", headers=user_headers, json={"full_name": full_name}
    )
    assert_refused(response, "full_name")


async def test_a_lone_surrogate_is_refused(client: AsyncClient) -> None:
    """JSON may escape half of a surrogate pair; no database can store it as UTF-8."""
    body = b'{"email": "new@example.com", "password": "long enough", "full_name": "a\\ud800"}'
    response = await client.post(
        "/api/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "full_name"]


async def test_text_that_is_fine_is_stored_as_sent(
    client: AsyncClient, session: AsyncSession
) -> None:
    full_name = "Ada Lovelace-Byron, née 李 😀"
    payload: dict[str, Any] = {
        "email": "fine@example.com",
        "password": "pass\tword with spaces",
        "full_name": full_name,
    }
    response = await client.post("/api/v1/auth/register", json=payload)
    assert response.status_code == 201, response.text
    assert response.json()["full_name"] == full_name
    login = await client.post(
        "/api/v1/auth/login",
        data={"username": "fine@example.com", "password": "pass\tword with spaces"},
    )
    assert login.status_code == 200

"""Wrong `current_password` on PATCH /users/me is limited like failed logins: per user, and
refused only from addresses that have failed too."""

from collections.abc import Callable

from fastapi import FastAPI

from app.core.errors import PROBLEM_JSON
from app.users.models import User
from tests.conftest import client_at
from tests.factories import DEFAULT_PASSWORD, auth_headers

ME = "/api/v1/users/me"
GUESSER, OTHER = "198.51.100.66", "203.0.113.10"


async def _change(app: FastAPI, address: str, user: User, current: str) -> int:
    body = {"password": "a brand new password", "current_password": current}
    async with client_at(app, address) as client:
        response = await client.patch(ME, headers=auth_headers(user), json=body)
        if response.status_code == 429:
            assert response.headers["content-type"] == PROBLEM_JSON
            assert 1 <= int(response.headers["retry-after"]) <= 60
        return response.status_code


async def test_wrong_current_passwords_are_limited_per_user(
    app_with: Callable[..., FastAPI], user: User, admin: User
) -> None:
    app = app_with(RATE_LIMIT_CURRENT_PASSWORD="3/minute")
    guesses = [await _change(app, GUESSER, user, f"guess {n}") for n in range(5)]
    assert guesses == [403, 403, 403, 429, 429]
    # The right password from that address is refused too: the limit is on the address's
    # guesses, whatever the next one is.
    assert await _change(app, GUESSER, user, DEFAULT_PASSWORD) == 429
    # Another user is not affected, even from that address.
    assert await _change(app, GUESSER, admin, "wrong") == 403


async def test_a_name_change_is_never_limited(app_with: Callable[..., FastAPI], user: User) -> None:
    app = app_with(RATE_LIMIT_CURRENT_PASSWORD="1/minute")
    assert await _change(app, GUESSER, user, "wrong") == 403
    async with client_at(app, GUESSER) as client:
        for n in range(3):
            response = await client.patch(
                ME, headers=auth_headers(user), json={"full_name": f"Ada {n}"}
            )
            assert response.status_code == 200

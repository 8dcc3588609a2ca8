"""Racing requests against the served app: several uvicorn workers, one real database.

Each race fires every request at once from one client with enough connections for all of them,
then checks what the database holds, not only what the responses said.
"""

import asyncio
from collections import Counter
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import Executable, func, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from app.auth.models import RefreshToken
from app.users.models import Role, User
from tests import databases
from tests.conftest import Served
from tests.servers import sign_up

PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def served(race_server: Served) -> Served:
    """The run's race server (RACE_WORKERS uvicorn workers; tests/conftest.py), at /api/v1."""
    return replace(race_server, base_url=f"{race_server.base_url}/api/v1")


def race_client(served: Served, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=served.base_url,
        limits=httpx.Limits(max_connections=connections),
        timeout=60,
    )


async def database_rows(served: Served, statement: Executable) -> list[tuple[Any, ...]]:
    """What the database itself holds, read on a connection of the test's own."""
    engine = create_async_engine(served.database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(statement)]
    finally:
        await engine.dispose()


async def _write(served: Served, statement: Executable) -> None:
    """Change the database directly, committed, on a connection of the test's own."""
    engine = create_async_engine(served.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(statement)
    finally:
        await engine.dispose()


async def test_simultaneous_registrations_of_one_email_create_one_account(
    served: Served,
) -> None:
    attempts = 50
    spellings = ["race@example.com", "Race@Example.com", "RACE@EXAMPLE.COM"]
    async with race_client(served, attempts) as client:
        responses = await asyncio.gather(
            *(
                client.post(
                    "/auth/register",
                    json={"email": spellings[n % len(spellings)], "password": PASSWORD},
                )
                for n in range(attempts)
            )
        )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: attempts - 1}
    conflicts = [r.json()["code"] for r in responses if r.status_code == 409]
    assert set(conflicts) == {"email_already_registered"}
    stored = await database_rows(
        served, select(User.id).where(func.lower(User.email) == "race@example.com")
    )
    assert len(stored) == 1


async def test_two_refreshes_with_one_token_end_the_login(served: Served) -> None:
    """Strict rotation (SECURITY.md): a refresh token is spent once. Two tabs refreshing with
    the same token at once look exactly like a thief and its victim, so one gets the new pair,
    the other a 401, and the whole login is revoked: the winner's new token is dead too."""
    async with race_client(served, 2) as client:
        registered = await client.post(
            "/auth/register", json={"email": "two.tabs@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201
        login = await client.post(
            "/auth/login", data={"username": "two.tabs@example.com", "password": PASSWORD}
        )
        token = login.json()["refresh_token"]
        responses = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": token}) for _ in range(2))
        )
        assert sorted(r.status_code for r in responses) == [200, 401]
        loser = next(r for r in responses if r.status_code == 401)
        assert loser.json()["code"] == "invalid_refresh_token"
        winner = next(r for r in responses if r.status_code == 200)
        again = await client.post(
            "/auth/refresh", json={"refresh_token": winner.json()["refresh_token"]}
        )
        assert again.status_code == 401
    live = await database_rows(
        served,
        select(RefreshToken.id)
        .join(User, User.id == RefreshToken.user_id)
        .where(User.email == "two.tabs@example.com", RefreshToken.revoked_at.is_(None)),
    )
    assert live == []


# How two admins take each other's rights away: PATCH a field, or DELETE the account.
_REMOVALS: list[tuple[str, dict[str, Any] | None]] = [
    ("patch", {"role": "user"}),
    ("patch", {"is_active": False}),
    ("delete", None),
]


async def test_two_admins_removing_each_other_at_once_leave_one_admin(served: Served) -> None:
    """The last active admin survives write skew: each of two admins demotes, deactivates or
    deletes the other at the same moment, round after round. One wins; the other is refused
    (409 last_admin if it was already past its own checks when the winner committed, else the
    401 or 403 its own lost rights earn it), and one active admin is left."""
    rounds = 20
    refusals: Counter[tuple[int, str]] = Counter()
    async with race_client(served, 4) as client:
        for round_ in range(rounds):
            emails = [f"admin{round_}a@example.com", f"admin{round_}b@example.com"]
            headers = [await sign_up(client, email, PASSWORD) for email in emails]
            ids = [(await client.get("/users/me", headers=h)).json()["id"] for h in headers]
            # Exactly these two are the active admins now.
            await _write(served, update(User).where(User.role == Role.ADMIN).values(role="user"))
            await _write(
                served,
                update(User).where(func.lower(User.email).in_(emails)).values(role="admin"),
            )
            method, body = _REMOVALS[round_ % len(_REMOVALS)]
            responses = await asyncio.gather(
                *(
                    client.request(method, f"/users/{ids[1 - n]}", json=body, headers=headers[n])
                    for n in range(2)
                )
            )
            statuses = sorted(response.status_code for response in responses)
            won = [r for r in responses if r.status_code in {200, 204}]
            lost = [r for r in responses if r.status_code not in {200, 204}]
            assert len(won) == 1, (round_, method, body, statuses, [r.text for r in responses])
            refusal = (lost[0].status_code, lost[0].json()["code"])
            assert refusal in {(409, "last_admin"), (403, "admin_required"), (401, "invalid_token")}
            refusals[refusal] += 1
            admins = await database_rows(
                served,
                select(User.id).where(User.role == Role.ADMIN, User.is_active.is_(True)),
            )
            assert len(admins) == 1, (round_, method, body, statuses)
    assert sum(refusals.values()) == rounds
    if not databases.ONE_WRITER_AT_A_TIME:
        # The requests did overlap: some losers were past their own checks when the winner
        # committed, and only the row locks stopped them (where whole transactions take turns,
        # as on SQLite, the loser always sees its own lost rights first).
        assert refusals[(409, "last_admin")] > 0

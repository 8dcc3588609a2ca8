"""Conditional writes racing through the served app: several uvicorn workers, one database.

Every racer sends the same If-Match, the ETag they all read: exactly one write may win, the
others must get 412, and the database must hold the winner's write.
"""

import asyncio
from collections import Counter

import httpx
import pytest

from tests.conftest import Served
from tests.servers import sign_up

RACERS = 2
ROUNDS = 5
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def base_url(race_server: Served) -> str:
    """The run's race server (RACE_WORKERS uvicorn workers; tests/conftest.py)."""
    return f"{race_server.base_url}/api/v1"


def race_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, limits=httpx.Limits(max_connections=RACERS), timeout=60
    )


async def race(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], field: str, round_: int
) -> list[httpx.Response]:
    """Read once, then send every racer's PATCH with that ETag at the same moment.

    Every value is new: a PATCH that changes nothing keeps the ETag, and rightly lets the
    next one through.
    """
    etag = (await client.get(url, headers=headers)).headers["etag"]
    conditional = {**headers, "If-Match": etag}
    return await asyncio.gather(
        *(
            client.patch(url, json={field: f"round {round_} racer {n}"}, headers=conditional)
            for n in range(RACERS)
        )
    )


async def assert_one_winner(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    field: str,
    responses: list[httpx.Response],
) -> None:
    assert Counter(r.status_code for r in responses) == {200: 1, 412: RACERS - 1}
    assert {r.json()["code"] for r in responses if r.status_code == 412} == {"precondition_failed"}
    (winner,) = (r for r in responses if r.status_code == 200)
    stored = await client.get(url, headers=headers)
    assert stored.json()[field] == winner.json()[field]
    assert stored.headers["etag"] == winner.headers["etag"]


async def test_one_of_two_updates_to_me_with_the_same_etag_wins(base_url: str) -> None:
    async with race_client(base_url) as client:
        headers = await sign_up(client, "racing-me@example.com", PASSWORD)
        for round_ in range(ROUNDS):
            responses = await race(client, "/users/me", headers, "full_name", round_)
            await assert_one_winner(client, "/users/me", headers, "full_name", responses)

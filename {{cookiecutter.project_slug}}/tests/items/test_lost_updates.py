"""Conditional item updates racing through the served app (tests/test_lost_updates.py: the race
server, and what a race must end with)."""

import pytest

from tests.conftest import Served
from tests.servers import sign_up
from tests.test_lost_updates import PASSWORD, ROUNDS, assert_one_winner, race, race_client


@pytest.fixture(scope="module")
def base_url(race_server: Served) -> str:
    """The run's race server (RACE_WORKERS uvicorn workers; tests/conftest.py)."""
    return f"{race_server.base_url}/api/v1"


async def test_one_of_two_updates_to_an_item_with_the_same_etag_wins(base_url: str) -> None:
    async with race_client(base_url) as client:
        headers = await sign_up(client, "racing-items@example.com", PASSWORD)
        created = await client.post("/items", json={"title": "original"}, headers=headers)
        url = f"/items/{created.json()['id']}"
        for round_ in range(ROUNDS):
            responses = await race(client, url, headers, "title", round_)
            await assert_one_winner(client, url, headers, "title", responses)

"""Racing item requests against the served app (tests/test_concurrency.py: the race server)."""

import asyncio
from collections import Counter
from dataclasses import replace

import pytest
from sqlalchemy import select

from app.items.models import Item
from tests.conftest import Served
from tests.servers import sign_up
from tests.test_concurrency import PASSWORD, database_rows, race_client


@pytest.fixture(scope="module")
def served(race_server: Served) -> Served:
    """The run's race server (RACE_WORKERS uvicorn workers; tests/conftest.py), at /api/v1."""
    return replace(race_server, base_url=f"{race_server.base_url}/api/v1")


async def test_simultaneous_creations_by_several_users_store_every_item_once(
    served: Served,
) -> None:
    users, per_user = 5, 40
    async with race_client(served, users * per_user) as client:
        headers = [await sign_up(client, f"maker{n}@example.com", PASSWORD) for n in range(users)]
        responses = await asyncio.gather(
            *(
                client.post("/items", json={"title": f"maker{n} item{i}"}, headers=headers[n])
                for n in range(users)
                for i in range(per_user)
            )
        )
        assert Counter(r.status_code for r in responses) == {201: users * per_user}

        owners = {
            n: (await client.get("/users/me", headers=headers[n])).json()["id"]
            for n in range(users)
        }
    for response in responses:
        item = response.json()
        maker = int(item["title"].split()[0].removeprefix("maker"))
        assert item["owner_id"] == owners[maker]

    rows = await database_rows(served, select(Item.owner_id, Item.title))
    made = [(str(owner), title) for owner, title in rows if title.startswith("maker")]
    assert len(made) == users * per_user
    assert len(set(made)) == users * per_user  # no row twice
    for owner, title in made:
        assert owner == owners[int(title.split()[0].removeprefix("maker"))]


async def test_concurrent_patches_leave_a_state_one_request_asked_for(served: Served) -> None:
    writers = 50
    async with race_client(served, writers) as client:
        headers = await sign_up(client, "editor@example.com", PASSWORD)
        created = await client.post("/items", json={"title": "original"}, headers=headers)
        item_url = f"/items/{created.json()['id']}"
        responses = await asyncio.gather(
            *(
                client.patch(
                    item_url,
                    json={"title": f"title {n}", "description": f"body {n}"},
                    headers=headers,
                )
                for n in range(writers)
            )
        )
        final = (await client.get(item_url, headers=headers)).json()

    assert Counter(r.status_code for r in responses) == {200: writers}
    for response in responses:  # each request saw its own write, whole
        body = response.json()
        assert body["title"].removeprefix("title ") == body["description"].removeprefix("body ")
    # The stored item is exactly one request's write: title and description from the same one.
    asked_for = {(f"title {n}", f"body {n}") for n in range(writers)}
    assert (final["title"], final["description"]) in asked_for

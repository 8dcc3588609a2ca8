import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.errors import PROBLEM_JSON
from app.users.models import User
from tests.factories import create_item, create_user

ITEMS = "/api/v1/items"


async def test_create_item_returns_201_and_location(
    client: AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    response = await client.post(
        ITEMS, headers=user_headers, json={"title": "  Buy milk  ", "description": "2 litres"}
    )
    assert response.status_code == 201
    body = response.json()
    assert body["title"] == "Buy milk"
    assert body["owner_id"] == str(user.id)
    assert response.headers["location"] == f"{ITEMS}/{body['id']}"
    fetched = await client.get(response.headers["location"], headers=user_headers)
    assert fetched.status_code == 200
    assert fetched.json() == body


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"title": ""},
        {"title": "   "},
        {"title": "x" * 201},
        {"title": "ok", "description": "x" * 5001},
        {"title": "ok", "owner_id": str(uuid.uuid4())},
        {"title": "ok", "id": str(uuid.uuid4())},
    ],
    ids=["empty", "blank", "spaces", "long-title", "long-description", "owner_id", "id"],
)
async def test_create_item_rejects_invalid_payload(
    client: AsyncClient, user_headers: dict[str, str], payload: dict[str, object]
) -> None:
    response = await client.post(ITEMS, headers=user_headers, json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_malformed_json_is_422(client: AsyncClient, user_headers: dict[str, str]) -> None:
    response = await client.post(
        ITEMS, headers={**user_headers, "Content-Type": "application/json"}, content=b"{nope"
    )
    assert response.status_code == 422


async def test_list_shows_only_my_items_newest_first(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    stranger = await create_user(session)
    await create_item(session, owner=stranger, title="not mine")
    titles = ["first", "second", "third"]
    for title in titles:
        await client.post(ITEMS, headers=user_headers, json={"title": title})

    response = await client.get(ITEMS, headers=user_headers, params={"limit": 2})
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 3
    assert (page["limit"], page["offset"]) == (2, 0)
    assert [item["title"] for item in page["items"]] == ["third", "second"]
    rest = await client.get(ITEMS, headers=user_headers, params={"limit": 2, "offset": 2})
    assert [item["title"] for item in rest.json()["items"]] == ["first"]


async def test_list_defaults_to_20(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    for _ in range(21):
        await create_item(session, owner=user)
    page = (await client.get(ITEMS, headers=user_headers)).json()
    assert (page["total"], page["limit"], page["offset"], len(page["items"])) == (21, 20, 0, 20)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"offset": -1},
        {"offset": 1_000_001},
        {"limit": "x"},
        {"offset": 1.5},
    ],
)
async def test_list_rejects_bad_paging(
    client: AsyncClient, user_headers: dict[str, str], params: dict[str, int | float | str]
) -> None:
    response = await client.get(ITEMS, headers=user_headers, params=params)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_list_runs_a_fixed_number_of_queries(
    client: AsyncClient,
    session: AsyncSession,
    connection: AsyncConnection,
    user: User,
    user_headers: dict[str, str],
) -> None:
    """No N+1: listing 30 items costs as many statements as listing 1."""
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    await create_item(session, owner=user)
    event.listen(connection.sync_connection, "before_cursor_execute", count)
    try:
        await client.get(ITEMS, headers=user_headers)
        one = len(statements)
        for _ in range(29):
            await create_item(session, owner=user)
        statements.clear()
        await client.get(ITEMS, headers=user_headers)
        assert len(statements) == one
    finally:
        event.remove(connection.sync_connection, "before_cursor_execute", count)


async def test_owner_updates_only_the_fields_sent(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user, title="old", description="keep me")
    response = await client.patch(f"{ITEMS}/{item.id}", headers=user_headers, json={"title": "new"})
    assert response.status_code == 200
    body = response.json()
    assert (body["title"], body["description"]) == ("new", "keep me")
    cleared = await client.patch(
        f"{ITEMS}/{item.id}", headers=user_headers, json={"description": None}
    )
    assert cleared.json()["description"] is None


@pytest.mark.parametrize(
    "payload", [{"title": None}, {"title": ""}, {"owner_id": str(uuid.uuid4())}, {"x": 1}]
)
async def test_update_rejects_invalid_payload(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    payload: dict[str, object],
) -> None:
    item = await create_item(session, owner=user)
    response = await client.patch(f"{ITEMS}/{item.id}", headers=user_headers, json=payload)
    assert response.status_code == 422


async def test_owner_deletes_an_item(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user)
    response = await client.delete(f"{ITEMS}/{item.id}", headers=user_headers)
    assert response.status_code == 204
    missing = await client.get(f"{ITEMS}/{item.id}", headers=user_headers)
    assert missing.status_code == 404


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_another_users_item_is_indistinguishable_from_a_missing_one(
    client: AsyncClient, session: AsyncSession, user_headers: dict[str, str], method: str
) -> None:
    stranger = await create_user(session)
    theirs = await create_item(session, owner=stranger)
    body = {"title": "mine now"} if method == "PATCH" else None
    foreign = await client.request(method, f"{ITEMS}/{theirs.id}", headers=user_headers, json=body)
    missing = await client.request(
        method, f"{ITEMS}/{uuid.uuid4()}", headers=user_headers, json=body
    )
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json() == missing.json()
    assert foreign.json()["code"] == "item_not_found"


async def test_admin_may_manage_any_item(
    client: AsyncClient, session: AsyncSession, user: User, admin_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user)
    assert (await client.get(f"{ITEMS}/{item.id}", headers=admin_headers)).status_code == 200
    listed = await client.get(ITEMS, headers=admin_headers)
    assert str(item.id) in {entry["id"] for entry in listed.json()["items"]}
    response = await client.patch(
        f"{ITEMS}/{item.id}", headers=admin_headers, json={"title": "moderated"}
    )
    assert response.status_code == 200
    assert response.json()["owner_id"] == str(user.id)


async def test_item_routes_need_a_token(client: AsyncClient) -> None:
    item_id = uuid.uuid4()
    for method, url in [
        ("GET", ITEMS),
        ("POST", ITEMS),
        ("GET", f"{ITEMS}/{item_id}"),
        ("PATCH", f"{ITEMS}/{item_id}"),
        ("DELETE", f"{ITEMS}/{item_id}"),
    ]:
        response = await client.request(method, url)
        assert response.status_code == 401, (method, url)


async def test_bad_item_id_is_422(client: AsyncClient, user_headers: dict[str, str]) -> None:
    response = await client.get(f"{ITEMS}/123", headers=user_headers)
    assert response.status_code == 422

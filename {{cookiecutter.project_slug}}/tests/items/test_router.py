import uuid

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.errors import PROBLEM_JSON
from app.users.models import Role, User
from tests.factories import auth_headers, create_user
from tests.items.factories import create_item

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


@pytest.mark.parametrize("change", ["deactivated", "token_outdated", "deleted"])
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
async def test_one_items_routes_refuse_an_account_that_no_longer_matches_the_token(
    client: AsyncClient, session: AsyncSession, change: str, method: str
) -> None:
    """The read of one item is also the account check: 401, not the item and not a 404."""
    owner = await create_user(session)
    item = await create_item(session, owner=owner, title="kept")
    headers = auth_headers(owner)
    assert (await client.get(f"{ITEMS}/{item.id}", headers=headers)).status_code == 200
    if change == "deactivated":
        owner.is_active = False
    elif change == "token_outdated":
        owner.token_version += 1
    else:
        await session.delete(owner)  # its items go with it
    await session.flush()
    body = {"title": "changed"} if method == "PATCH" else None
    response = await client.request(method, f"{ITEMS}/{item.id}", headers=headers, json=body)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"
    if change != "deleted":
        await session.refresh(item)
        assert item.title == "kept"


async def test_an_admin_demoted_since_the_token_sees_only_their_own_items(
    client: AsyncClient, session: AsyncSession, user: User, admin: User
) -> None:
    theirs = await create_item(session, owner=user)
    headers = auth_headers(admin)
    assert (await client.get(f"{ITEMS}/{theirs.id}", headers=headers)).status_code == 200
    admin.role = Role.USER
    await session.flush()
    response = await client.get(f"{ITEMS}/{theirs.id}", headers=headers)
    assert response.status_code == 404


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


# HTTP caching and lost updates (app/core/http_cache.py).


async def test_an_item_carries_a_stable_etag_and_private_caching(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user)
    first = await client.get(f"{ITEMS}/{item.id}", headers=user_headers)
    second = await client.get(f"{ITEMS}/{item.id}", headers=user_headers)
    assert first.status_code == second.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('"')  # strong
    assert second.headers["etag"] == etag
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Authorization"


async def _read_again(
    client: AsyncClient, url: str, headers: dict[str, str], if_none_match: str
) -> tuple[str, Response]:
    """The ETag of a first read, and a second read sending `if_none_match` (where `{etag}`
    stands for that ETag)."""
    etag = (await client.get(url, headers=headers)).headers["etag"]
    again = {**headers, "If-None-Match": if_none_match.format(etag=etag)}
    return etag, await client.get(url, headers=again)


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", '"other", {etag}', "W/{etag}", "*", '"other",W/{etag} , '],
    ids=["same", "in-a-list", "weak", "star", "weak-in-a-list"],
)
async def test_a_current_copy_gets_304_without_a_body(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    if_none_match: str,
) -> None:
    item = await create_item(session, owner=user)
    etag, response = await _read_again(client, f"{ITEMS}/{item.id}", user_headers, if_none_match)
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Authorization"


@pytest.mark.parametrize(
    "if_none_match", ['"stale"', 'W/"stale"', "not-quoted", '"unclosed', "{etag}junk", ""]
)
async def test_another_or_malformed_if_none_match_gets_the_item(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    if_none_match: str,
) -> None:
    item = await create_item(session, owner=user)
    etag, response = await _read_again(client, f"{ITEMS}/{item.id}", user_headers, if_none_match)
    assert response.status_code == 200
    assert response.json()["id"] == str(item.id)
    assert response.headers["etag"] == etag


async def test_if_none_match_does_not_reveal_another_users_item(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    stranger = await create_user(session)
    theirs = await create_item(session, owner=stranger)
    response = await client.get(
        f"{ITEMS}/{theirs.id}", headers={**user_headers, "If-None-Match": "*"}
    )
    assert response.status_code == 404


async def test_a_patch_answers_the_new_etag_and_a_patch_changing_nothing_keeps_it(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user, title="old")
    url = f"{ITEMS}/{item.id}"
    before = (await client.get(url, headers=user_headers)).headers["etag"]
    patched = await client.patch(url, headers=user_headers, json={"title": "new"})
    assert patched.status_code == 200
    after = patched.headers["etag"]
    assert after != before
    fetched = await client.get(url, headers=user_headers)
    assert fetched.headers["etag"] == after  # the PATCH body is what a GET gives
    assert fetched.json() == patched.json()
    again = await client.patch(url, headers=user_headers, json={"title": "new"})
    assert again.headers["etag"] == after
    # The old copy is no longer current; the new one is.
    stale = await client.get(url, headers={**user_headers, "If-None-Match": before})
    assert stale.status_code == 200
    current = await client.get(url, headers={**user_headers, "If-None-Match": after})
    assert current.status_code == 304


@pytest.mark.parametrize(
    "if_match",
    ['"stale"', "W/{etag}", "{etag}junk", "not-quoted", ""],
    ids=["other", "weak-never-matches", "trailing-junk", "unquoted", "empty"],
)
async def test_a_write_with_a_stale_or_malformed_if_match_is_412_and_changes_nothing(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    if_match: str,
) -> None:
    item = await create_item(session, owner=user, title="kept")
    url = f"{ITEMS}/{item.id}"
    before = await client.get(url, headers=user_headers)
    conditional = {**user_headers, "If-Match": if_match.format(etag=before.headers["etag"])}
    for response in [
        await client.patch(url, headers=conditional, json={"title": "lost"}),
        await client.delete(url, headers=conditional),
    ]:
        assert response.status_code == 412
        assert response.headers["content-type"] == PROBLEM_JSON
        assert response.json()["code"] == "precondition_failed"
        assert response.headers["cache-control"] == "no-store"
    after = await client.get(url, headers=user_headers)
    assert after.status_code == 200
    assert after.json() == before.json()


@pytest.mark.parametrize("if_match", ["{etag}", '"other", {etag}', "*"])
async def test_a_write_with_a_current_if_match_succeeds(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    if_match: str,
) -> None:
    item = await create_item(session, owner=user, title="old")
    url = f"{ITEMS}/{item.id}"
    etag = (await client.get(url, headers=user_headers)).headers["etag"]
    conditional = {**user_headers, "If-Match": if_match.format(etag=etag)}
    patched = await client.patch(url, headers=conditional, json={"title": "new"})
    assert patched.status_code == 200
    assert patched.json()["title"] == "new"
    # The first write made the tag stale: a second one with it fails, unless it is `*`.
    replayed = await client.patch(url, headers=conditional, json={"title": "newer"})
    assert replayed.status_code == (200 if if_match == "*" else 412)
    current = {
        **user_headers,
        "If-Match": (await client.get(url, headers=user_headers)).headers["etag"],
    }
    assert (await client.delete(url, headers=current)).status_code == 204
    assert (await client.get(url, headers=user_headers)).status_code == 404


async def test_an_overlong_precondition_is_422_not_500(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user)
    url = f"{ITEMS}/{item.id}"
    huge = '"' + "a" * 5000 + '"'
    read = await client.get(url, headers={**user_headers, "If-None-Match": huge})
    write = await client.patch(url, headers={**user_headers, "If-Match": huge}, json={})
    assert read.status_code == write.status_code == 422
    assert read.headers["content-type"] == write.headers["content-type"] == PROBLEM_JSON


async def test_if_match_lines_are_read_as_one_list(
    client: AsyncClient, session: AsyncSession, user: User, user_headers: dict[str, str]
) -> None:
    item = await create_item(session, owner=user)
    url = f"{ITEMS}/{item.id}"
    etag = (await client.get(url, headers=user_headers)).headers["etag"]
    headers = [*user_headers.items(), ("If-Match", '"other"'), ("If-Match", etag)]
    response = await client.patch(url, headers=headers, json={"title": "both lines"})
    assert response.status_code == 200

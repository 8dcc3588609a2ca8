import uuid

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import PROBLEM_JSON
from app.users.models import Role, User
from tests.factories import DEFAULT_PASSWORD, auth_headers, create_user, login

ME = "/api/v1/users/me"
USERS = "/api/v1/users"


async def test_read_me(client: AsyncClient, user: User, user_headers: dict[str, str]) -> None:
    response = await client.get(ME, headers=user_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.id)
    assert body["email"] == user.email
    assert body["full_name"] == "Ada User"
    assert set(body) == {
        "id",
        "email",
        "full_name",
        "role",
        "is_active",
        "email_verified_at",
        "created_at",
    }
    assert body["email_verified_at"] is None


async def test_update_my_name(client: AsyncClient, user_headers: dict[str, str]) -> None:
    response = await client.patch(ME, headers=user_headers, json={"full_name": "Ada L."})
    assert response.status_code == 200
    assert response.json()["full_name"] == "Ada L."


async def test_change_password_signs_out_old_tokens(
    client: AsyncClient, user: User, user_headers: dict[str, str]
) -> None:
    tokens = await login(client, user.email)
    response = await client.patch(
        ME,
        headers=user_headers,
        json={"password": "a brand new password", "current_password": DEFAULT_PASSWORD},
    )
    assert response.status_code == 200

    assert (await client.get(ME, headers=user_headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    await login(client, user.email, "a brand new password")
    old = await client.post(
        "/api/v1/auth/login", data={"username": user.email, "password": DEFAULT_PASSWORD}
    )
    assert old.status_code == 401


async def test_change_password_with_wrong_current_password_is_403(
    client: AsyncClient, user_headers: dict[str, str]
) -> None:
    response = await client.patch(
        ME,
        headers=user_headers,
        json={"password": "a brand new password", "current_password": "not my password"},
    )
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_current_password"


@pytest.mark.parametrize(
    "payload",
    [
        {"password": "a brand new password"},
        {"password": None, "current_password": DEFAULT_PASSWORD},
        {"password": "short", "current_password": DEFAULT_PASSWORD},
        {"full_name": "x" * 101},
        {"role": "admin"},
        {"is_active": False},
        {"email": "other@example.com"},
    ],
    ids=["no-current", "null-password", "short", "long-name", "role", "is-active", "email"],
)
async def test_update_me_rejects_invalid_payload(
    client: AsyncClient, user_headers: dict[str, str], payload: dict[str, object]
) -> None:
    response = await client.patch(ME, headers=user_headers, json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_user_routes_need_a_token(client: AsyncClient, user: User) -> None:
    for method, url in [("GET", ME), ("PATCH", ME), ("GET", USERS), ("GET", f"{USERS}/{user.id}")]:
        response = await client.request(method, url)
        assert response.status_code == 401, (method, url)


@pytest.mark.parametrize(
    ("method", "suffix"),
    [("GET", ""), ("GET", "/{id}"), ("PATCH", "/{id}"), ("DELETE", "/{id}")],
)
async def test_admin_routes_are_403_for_users(
    client: AsyncClient, user: User, user_headers: dict[str, str], method: str, suffix: str
) -> None:
    url = USERS + suffix.format(id=user.id)
    response = await client.request(method, url, headers=user_headers, json={})
    assert response.status_code == 403
    assert response.json()["code"] == "admin_required"


async def test_admin_lists_users_a_page_at_a_time(
    client: AsyncClient, session: AsyncSession, admin_headers: dict[str, str]
) -> None:
    for _ in range(4):
        await create_user(session)
    first = await client.get(USERS, headers=admin_headers, params={"limit": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 5
    assert (body["limit"], body["offset"]) == (2, 0)
    assert len(body["items"]) == 2
    rest = await client.get(USERS, headers=admin_headers, params={"limit": 2, "offset": 4})
    assert len(rest.json()["items"]) == 1
    ids = {item["id"] for item in body["items"]} | {item["id"] for item in rest.json()["items"]}
    assert len(ids) == 3


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "ten"}])
async def test_admin_list_rejects_bad_paging(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, int | str]
) -> None:
    response = await client.get(USERS, headers=admin_headers, params=params)
    assert response.status_code == 422


async def test_admin_reads_a_user(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    response = await client.get(f"{USERS}/{user.id}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["email"] == user.email


async def test_admin_reading_a_missing_user_is_404(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get(f"{USERS}/{uuid.uuid4()}", headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["code"] == "user_not_found"
    malformed = await client.get(f"{USERS}/not-a-uuid", headers=admin_headers)
    assert malformed.status_code == 422


async def test_admin_promotes_a_user(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    response = await client.patch(
        f"{USERS}/{user.id}", headers=admin_headers, json={"role": "admin"}
    )
    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    listed = await client.get(USERS, headers=auth_headers(user))
    assert listed.status_code == 200


async def test_deactivated_user_tokens_stop_working(
    client: AsyncClient, user: User, user_headers: dict[str, str], admin_headers: dict[str, str]
) -> None:
    tokens = await login(client, user.email)
    response = await client.patch(
        f"{USERS}/{user.id}", headers=admin_headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert (await client.get(ME, headers=user_headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401


@pytest.mark.parametrize(
    "payload",
    [
        {"role": None},
        {"is_active": None},
        {"is_active": 0},
        {"is_active": "false"},
        {"role": "superuser"},
        {"email": "x@example.com"},
    ],
)
async def test_admin_update_rejects_invalid_payload(
    client: AsyncClient, user: User, admin_headers: dict[str, str], payload: dict[str, object]
) -> None:
    response = await client.patch(f"{USERS}/{user.id}", headers=admin_headers, json=payload)
    assert response.status_code == 422


async def test_admin_deletes_a_user(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    response = await client.delete(f"{USERS}/{user.id}", headers=admin_headers)
    assert response.status_code == 204
    again = await client.delete(f"{USERS}/{user.id}", headers=admin_headers)
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("method", "payload"),
    [("PATCH", {"role": "user"}), ("PATCH", {"is_active": False}), ("DELETE", None)],
    ids=["demote", "deactivate", "delete"],
)
async def test_the_last_admin_stays(
    client: AsyncClient,
    admin: User,
    admin_headers: dict[str, str],
    method: str,
    payload: dict[str, object] | None,
) -> None:
    response = await client.request(
        method, f"{USERS}/{admin.id}", headers=admin_headers, json=payload
    )
    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"


async def test_an_admin_may_step_down_when_another_remains(
    client: AsyncClient, session: AsyncSession, admin: User, admin_headers: dict[str, str]
) -> None:
    await create_user(session, role=Role.ADMIN)
    response = await client.patch(
        f"{USERS}/{admin.id}", headers=admin_headers, json={"role": "user"}
    )
    assert response.status_code == 200
    assert response.json()["role"] == "user"


# HTTP caching and lost updates (app/core/http_cache.py).


async def test_me_carries_an_etag_and_answers_304_for_a_current_copy(
    client: AsyncClient, user_headers: dict[str, str]
) -> None:
    first = await client.get(ME, headers=user_headers)
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "private, no-cache"
    assert first.headers["vary"] == "Authorization"
    assert (await client.get(ME, headers=user_headers)).headers["etag"] == etag
    for if_none_match in [etag, f"W/{etag}", f'"x", {etag}', "*"]:
        cached = await client.get(ME, headers={**user_headers, "If-None-Match": if_none_match})
        assert cached.status_code == 304, if_none_match
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    other = await client.get(ME, headers={**user_headers, "If-None-Match": '"x"'})
    assert other.status_code == 200


async def test_update_me_with_a_stale_if_match_is_412_and_changes_nothing(
    client: AsyncClient, user_headers: dict[str, str]
) -> None:
    read = await client.get(ME, headers=user_headers)
    etag = read.headers["etag"]
    renamed = await client.patch(
        ME, headers={**user_headers, "If-Match": etag}, json={"full_name": "First"}
    )
    assert renamed.status_code == 200
    assert renamed.headers["etag"] != etag
    assert (await client.get(ME, headers=user_headers)).headers["etag"] == renamed.headers["etag"]

    lost = await client.patch(
        ME, headers={**user_headers, "If-Match": etag}, json={"full_name": "Second"}
    )
    assert lost.status_code == 412
    assert lost.headers["content-type"] == PROBLEM_JSON
    assert lost.json()["code"] == "precondition_failed"
    assert (await client.get(ME, headers=user_headers)).json()["full_name"] == "First"


async def test_admin_reads_a_user_with_an_etag_and_gets_304(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    url = f"{USERS}/{user.id}"
    etag = (await client.get(url, headers=admin_headers)).headers["etag"]
    cached = await client.get(url, headers={**admin_headers, "If-None-Match": etag})
    assert cached.status_code == 304
    missing = await client.get(
        f"{USERS}/{uuid.uuid4()}", headers={**admin_headers, "If-None-Match": "*"}
    )
    assert missing.status_code == 404


async def test_admin_writes_honour_if_match(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    url = f"{USERS}/{user.id}"
    etag = (await client.get(url, headers=admin_headers)).headers["etag"]
    promoted = await client.patch(
        url, headers={**admin_headers, "If-Match": etag}, json={"role": "admin"}
    )
    assert promoted.status_code == 200
    new_etag = promoted.headers["etag"]
    assert new_etag != etag

    stale = {**admin_headers, "If-Match": etag}
    demoted = await client.patch(url, headers=stale, json={"role": "user"})
    deleted = await client.delete(url, headers=stale)
    assert demoted.status_code == deleted.status_code == 412
    assert deleted.json()["code"] == "precondition_failed"
    still = await client.get(url, headers=admin_headers)
    assert still.status_code == 200
    assert still.json()["role"] == "admin"

    gone = await client.delete(url, headers={**admin_headers, "If-Match": new_etag})
    assert gone.status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404

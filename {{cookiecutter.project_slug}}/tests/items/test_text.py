"""Text an item cannot hold is a 422 before any query runs (tests/core/test_text.py: the rule
for every field)."""

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.users.models import User
from tests.core.test_text import NUL, assert_refused
from tests.items.factories import create_item


@pytest.mark.parametrize(
    ("field", "payload"),
    [
        ("title", {"title": f"Buy{NUL}milk"}),
        ("description", {"title": "Buy milk", "description": f"2{NUL}litres"}),
    ],
    ids=["title", "description"],
)
async def test_items_refuse_nul(
    client: AsyncClient,
    session: AsyncSession,
    user: User,
    user_headers: dict[str, str],
    field: str,
    payload: dict[str, str],
) -> None:
    created = await client.post("/api/v1/items", headers=user_headers, json=payload)
    assert_refused(created, field)
    item = await create_item(session, owner=user)
    updated = await client.patch(
        f"/api/v1/items/{item.id}", headers=user_headers, json={field: payload[field]}
    )
    assert_refused(updated, field)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"title": "two\nlines"}, "title"),
        ({"title": "a\ttab"}, "title"),
        ({"title": "bell\x07"}, "title"),
        ({"title": "next\x85line"}, "title"),
        ({"title": "ok", "description": "escape \x1b[31m"}, "description"),
        ({"title": "ok", "description": "delete\x7f"}, "description"),
    ],
    ids=["title-lf", "title-tab", "title-bell", "title-c1", "description-esc", "description-del"],
)
async def test_items_refuse_control_characters(
    client: AsyncClient, user_headers: dict[str, str], payload: dict[str, str], field: str
) -> None:
    response = await client.post("/api/v1/items", headers=user_headers, json=payload)
    assert_refused(response, field)


async def test_a_description_keeps_its_lines_and_tabs(
    client: AsyncClient, user_headers: dict[str, str]
) -> None:
    description = "first line\r\nsecond\tline\nthird line, ünïcödé ✓"
    created = await client.post(
        "/api/v1/items", headers=user_headers, json={"title": "Notes", "description": description}
    )
    assert created.status_code == 201, created.text
    fetched = await client.get(created.headers["location"], headers=user_headers)
    assert fetched.json()["description"] == description

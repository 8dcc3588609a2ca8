"""The example resource. Ownership is part of every query: another user's item is not found."""

import uuid
from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import Row, Select, and_, bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.exceptions import InvalidToken
from app.core.errors import is_foreign_key_violation
from app.items.exceptions import ItemNotFound
from app.items.models import Item
from app.items.schemas import ItemCreate, ItemRead, ItemUpdate
from app.users.models import Caller, Role, User
from app.users.service import VALID_ACCOUNT

SelectT = TypeVar("SelectT", bound=Select[Any])


def _visible_to(statement: SelectT, viewer: Caller) -> SelectT:
    """Admins see every item; anyone else only their own."""
    return statement if viewer.is_admin else statement.where(Item.owner_id == viewer.id)


async def create_item(session: AsyncSession, *, owner: Caller, data: ItemCreate) -> Item:
    """Raises InvalidToken when the owner was deleted after the request read it."""
    item = Item(owner_id=owner.id, **data.model_dump())
    session.add(item)
    try:
        await session.flush()
    except IntegrityError as exc:
        if not is_foreign_key_violation(exc):
            raise
        # The account is gone: the answer a request arriving a moment later would get.
        raise InvalidToken from exc
    return item


# The read of one item, with the caller's account check in the same query: the caller's row if
# the account is valid (no row: InvalidToken), joined to the item if the caller may see it
# (admins see every item, anyone else only their own; none: not found). Built once, with its
# values as parameters: the most frequent query of the resource spends nothing on being built
# or looked up in the SQL cache.
def _item_for_account(*columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(User)
        .outerjoin(
            Item,
            and_(
                Item.id == bindparam("item_id"),
                or_(Item.owner_id == User.id, User.role == Role.ADMIN),
            ),
        )
        .where(*VALID_ACCOUNT)
    )


_ITEM_FOR_ACCOUNT = _item_for_account(Item, User.role)
# The same query for a route that only shows the item: its columns as a plain row.
_ITEM_ROW_FOR_ACCOUNT = _item_for_account(*Item.__table__.columns, User.role.label("caller_role"))


async def get_item_for_account(
    session: AsyncSession, *, user_id: uuid.UUID, token_version: int, item_id: uuid.UUID
) -> Item:
    """One item for the token's user, with that user's account check in the same round trip.

    Raises InvalidToken when the account is gone, inactive or has moved past the token's version
    (as `get_principal` would), ItemNotFound when the caller may not see the item.
    """
    values = {"user_id": user_id, "token_version": token_version, "item_id": item_id}
    row = (await session.execute(_ITEM_FOR_ACCOUNT, values)).one_or_none()
    if row is None:
        raise InvalidToken
    item: Item | None = row[0]
    if item is None:
        raise ItemNotFound
    return item


async def read_item_for_account(
    session: AsyncSession, *, user_id: uuid.UUID, token_version: int, item_id: uuid.UUID
) -> ItemRead:
    """`get_item_for_account` for a route that only shows the item: the same query, checks and
    errors, but its row goes straight into the `ItemRead` the route answers with. No `Item` is
    built and tracked by the session (the ORM's share of the read: a fifth of a cached item
    GET's CPU, measured by `make bench`); a route that changes the item needs the `Item`.
    """
    values = {"user_id": user_id, "token_version": token_version, "item_id": item_id}
    connection = await session.connection()
    row = (await connection.execute(_ITEM_ROW_FOR_ACCOUNT, values)).one_or_none()
    if row is None:
        raise InvalidToken
    if row.id is None:
        raise ItemNotFound
    return ItemRead.model_validate(row)


async def list_items(
    session: AsyncSession, *, viewer: Caller, limit: int, offset: int
) -> tuple[Sequence[Row[Any]], int]:
    """A page of the items the viewer may see, newest first, and how many there are.

    The page comes as plain rows (Core, as in `read_item_for_account`), which the route reads
    into `ItemRead`: the ORM would build and track an `Item` for each row, for a page that
    nobody changes.
    """
    visible = _visible_to(select(*Item.__table__.columns), viewer)
    connection = await session.connection()
    total = await connection.scalar(select(func.count()).select_from(visible.subquery()))
    result = await connection.execute(
        visible.order_by(Item.created_at.desc(), Item.id.desc()).limit(limit).offset(offset)
    )
    return result.all(), total or 0


async def update_item(session: AsyncSession, *, item: Item, data: ItemUpdate) -> Item:
    for field, value in data.model_dump(exclude_unset=True).items():
        setattr(item, field, value)
    await session.flush()
    return item


async def delete_item(session: AsyncSession, *, item: Item) -> None:
    await session.delete(item)
    await session.flush()

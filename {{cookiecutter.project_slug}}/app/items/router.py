"""Item routes: `router` for the collection, `item_router` for one item (see app/api.py).

Both need a valid access token. The collection's routes get the account check from their
router; each route of `item_router` reads its item with the account check in the same query
(`OwnedItem`), so one read of an item is one round trip to the database.
"""

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentPrincipal
from app.core.errors import problem_responses
from app.core.http_cache import IfMatch, IfNoneMatch, read_responses, write_responses
from app.core.schemas import Page, PageQuery
from app.db.session import SessionDep
from app.items import service
from app.items.dependencies import OwnedItem, OwnedItemToRead
from app.items.schemas import ItemCreate, ItemRead, ItemUpdate

router = APIRouter(responses=problem_responses(422))
item_router = APIRouter(responses=problem_responses(422))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemRead,
    responses=problem_responses(400),
)
async def create_item(
    session: SessionDep,
    caller: CurrentPrincipal,
    data: ItemCreate,
    request: Request,
    response: Response,
) -> ItemRead:
    item = await service.create_item(session, owner=caller, data=data)
    response.headers["Location"] = str(request.app.url_path_for("read_item", item_id=item.id))
    return ItemRead.model_validate(item)


@router.get("", response_model=Page[ItemRead])
async def list_items(
    session: SessionDep, caller: CurrentPrincipal, page: PageQuery
) -> Page[ItemRead]:
    """Your items, newest first (an admin sees everyone's)."""
    items, total = await service.list_items(
        session, viewer=caller, limit=page.limit, offset=page.offset
    )
    return Page[ItemRead].of(items, total=total, params=page)


@item_router.get(
    "/{item_id}",
    response_model=ItemRead,
    responses={**read_responses(), **problem_responses(404)},
)
async def read_item(item: OwnedItemToRead, if_none_match: IfNoneMatch) -> Response:
    """With its ETag; 304 and no body if `If-None-Match` names it."""
    return if_none_match.respond(item)


@item_router.patch(
    "/{item_id}",
    response_model=ItemRead,
    responses={**write_responses(), **problem_responses(400, 404)},
)
async def update_item(
    session: SessionDep, item: OwnedItem, data: ItemUpdate, if_match: IfMatch
) -> ItemRead:
    """Change the fields sent; with `If-Match`, only if the item is as you last read it."""
    await if_match.check(session, item, ItemRead)
    item = await service.update_item(session, item=item, data=data)
    return if_match.tag(ItemRead.model_validate(item))


@item_router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses={**write_responses(204), **problem_responses(404)},
)
async def delete_item(session: SessionDep, item: OwnedItem, if_match: IfMatch) -> None:
    """With `If-Match`, only if the item is as you last read it."""
    await if_match.check(session, item, ItemRead)
    await service.delete_item(session, item=item)

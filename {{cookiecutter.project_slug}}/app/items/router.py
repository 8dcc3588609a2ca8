"""Item routes. The whole router requires a valid access token (see app/api.py)."""

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentUser
from app.core.errors import problem_responses
from app.core.schemas import Page, PageQuery
from app.db.session import SessionDep
from app.items import service
from app.items.dependencies import OwnedItem
from app.items.schemas import ItemCreate, ItemRead, ItemUpdate

router = APIRouter(responses=problem_responses(422))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemRead,
    responses=problem_responses(400),
)
async def create_item(
    session: SessionDep, user: CurrentUser, data: ItemCreate, request: Request, response: Response
) -> ItemRead:
    item = await service.create_item(session, owner=user, data=data)
    response.headers["Location"] = str(request.app.url_path_for("read_item", item_id=item.id))
    return ItemRead.model_validate(item)


@router.get("", response_model=Page[ItemRead])
async def list_items(session: SessionDep, user: CurrentUser, page: PageQuery) -> Page[ItemRead]:
    """Your items, newest first (an admin sees everyone's)."""
    items, total = await service.list_items(
        session, viewer=user, limit=page.limit, offset=page.offset
    )
    return Page[ItemRead].of(items, total=total, params=page)


@router.get("/{item_id}", response_model=ItemRead, responses=problem_responses(404))
async def read_item(item: OwnedItem) -> ItemRead:
    return ItemRead.model_validate(item)


@router.patch("/{item_id}", response_model=ItemRead, responses=problem_responses(400, 404))
async def update_item(session: SessionDep, item: OwnedItem, data: ItemUpdate) -> ItemRead:
    item = await service.update_item(session, item=item, data=data)
    return ItemRead.model_validate(item)


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(404),
)
async def delete_item(session: SessionDep, item: OwnedItem) -> None:
    await service.delete_item(session, item=item)

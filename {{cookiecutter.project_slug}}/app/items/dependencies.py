import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.auth.dependencies import TokenClaims, checks_account
from app.db.session import SessionDep, SessionmakerDep
from app.items import service
from app.items.models import Item
from app.items.schemas import ItemRead


@checks_account
async def get_owned_item(
    session: SessionDep, claims: TokenClaims, item_id: Annotated[uuid.UUID, Path()]
) -> Item:
    """The item, if the current user may see it; 404 otherwise (never 403: no existence leak).

    Its query is also the caller's account check (`checks_account`), so a read of one item
    makes one round trip to the database instead of two.
    """
    return await service.get_item_for_account(
        session, user_id=claims.user_id, token_version=claims.token_version, item_id=item_id
    )


OwnedItem = Annotated[Item, Depends(get_owned_item)]


@checks_account
async def get_owned_item_to_read(
    factory: SessionmakerDep, claims: TokenClaims, item_id: Annotated[uuid.UUID, Path()]
) -> ItemRead:
    """`get_owned_item` for a route that only shows the item: its session lives just for the
    query (see `get_current_user_to_read`), and the item comes as the `ItemRead` the route
    answers with, read from its row (`service.read_item_for_account`)."""
    async with factory() as session:
        return await service.read_item_for_account(
            session, user_id=claims.user_id, token_version=claims.token_version, item_id=item_id
        )


OwnedItemToRead = Annotated[ItemRead, Depends(get_owned_item_to_read)]

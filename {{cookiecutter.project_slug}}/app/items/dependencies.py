import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.auth.dependencies import TokenClaims, checks_account
from app.db.session import SessionDep, SessionmakerDep
from app.items import service
from app.items.models import Item


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
) -> Item:
    """`get_owned_item` for a route that only reads: its session lives just for the query
    (see `get_current_user_to_read`). The item is loaded whole, so it needs no session after."""
    async with factory() as session:
        return await service.get_item_for_account(
            session, user_id=claims.user_id, token_version=claims.token_version, item_id=item_id
        )


OwnedItemToRead = Annotated[Item, Depends(get_owned_item_to_read)]

import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.auth.dependencies import CurrentPrincipal
from app.db.session import SessionDep
from app.items import service
from app.items.models import Item


async def get_owned_item(
    session: SessionDep, caller: CurrentPrincipal, item_id: Annotated[uuid.UUID, Path()]
) -> Item:
    """The item, if the current user may see it; 404 otherwise (never 403: no existence leak)."""
    return await service.get_item(session, viewer=caller, item_id=item_id)


OwnedItem = Annotated[Item, Depends(get_owned_item)]

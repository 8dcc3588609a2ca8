"""User routes: `router` for any signed-in user, `admin_router` for admins only (app/api.py)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from app.auth.dependencies import CurrentUser, PasswordsDep, get_admin_user
from app.core.errors import problem_responses
from app.core.schemas import Page, PageQuery
from app.db.session import SessionDep
from app.users import service
from app.users.models import User
from app.users.schemas import UserRead, UserUpdateAdmin, UserUpdateMe

router = APIRouter()
admin_router = APIRouter(dependencies=[Depends(get_admin_user)], responses=problem_responses(403))


@router.get("/me", response_model=UserRead)
async def read_me(user: CurrentUser) -> UserRead:
    return UserRead.model_validate(user)


@router.patch("/me", response_model=UserRead, responses=problem_responses(400, 403, 409, 422))
async def update_me(
    session: SessionDep, passwords: PasswordsDep, user: CurrentUser, data: UserUpdateMe
) -> UserRead:
    """Change your name, or your password (with `current_password`; signs out everywhere)."""
    user = await service.update_me(session, passwords=passwords, user=user, data=data)
    return UserRead.model_validate(user)


async def get_user_by_id(session: SessionDep, user_id: Annotated[uuid.UUID, Path()]) -> User:
    return await service.get_user(session, user_id=user_id)


TargetUser = Annotated[User, Depends(get_user_by_id)]


@admin_router.get("", response_model=Page[UserRead], responses=problem_responses(422))
async def list_users(session: SessionDep, page: PageQuery) -> Page[UserRead]:
    users, total = await service.list_users(session, limit=page.limit, offset=page.offset)
    return Page[UserRead].of(users, total=total, params=page)


@admin_router.get("/{user_id}", response_model=UserRead, responses=problem_responses(404, 422))
async def read_user(user: TargetUser) -> UserRead:
    return UserRead.model_validate(user)


@admin_router.patch(
    "/{user_id}", response_model=UserRead, responses=problem_responses(400, 404, 409, 422)
)
async def update_user(session: SessionDep, user: TargetUser, data: UserUpdateAdmin) -> UserRead:
    """Change a user's name, role or active flag. The last admin stays an admin."""
    user = await service.update_user(session, user=user, data=data)
    return UserRead.model_validate(user)


@admin_router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(404, 409, 422),
)
async def delete_user(session: SessionDep, user: TargetUser) -> None:
    await service.delete_user(session, user=user)

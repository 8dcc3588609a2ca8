"""User routes: `router` for any signed-in user, `admin_router` for admins only (app/api.py)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.auth.dependencies import CurrentUser, CurrentUserToRead, PasswordsDep, get_admin
from app.core.errors import problem_responses
from app.core.http_cache import IfMatch, IfNoneMatch, read_responses, write_responses
from app.core.ratelimit import limit_failures
from app.core.schemas import Page, PageQuery
from app.db.session import SessionDep
from app.users import service
from app.users.exceptions import WrongCurrentPassword
from app.users.models import User
from app.users.schemas import UserRead, UserUpdateAdmin, UserUpdateMe

router = APIRouter()
admin_router = APIRouter(dependencies=[Depends(get_admin)], responses=problem_responses(403))


@router.get("/me", response_model=UserRead, responses=read_responses())
async def read_me(user: CurrentUserToRead, if_none_match: IfNoneMatch) -> Response:
    return if_none_match.respond(UserRead.model_validate(user))


async def password_check_key(user: CurrentUser, data: UserUpdateMe) -> str | None:
    """The user, when the request changes the password (and so checks the current one); a
    change of name alone is neither counted nor refused."""
    return str(user.id) if data.password is not None else None


# Wrong current passwords per user (RATE_LIMIT_CURRENT_PASSWORD), refused like failed logins.
limit_current_password_failures = limit_failures(
    "current_password_failure", key=password_check_key, failure=WrongCurrentPassword
)


@router.patch(
    "/me",
    response_model=UserRead,
    responses={**write_responses(), **problem_responses(400, 403, 409, 422)},
    dependencies=[Depends(limit_current_password_failures, scope="function")],
)
async def update_me(
    session: SessionDep,
    passwords: PasswordsDep,
    user: CurrentUser,
    data: UserUpdateMe,
    if_match: IfMatch,
) -> UserRead:
    """Change your name, or your password (with `current_password`; signs out everywhere)."""
    await if_match.check(session, user, UserRead)
    user = await service.update_me(session, passwords=passwords, user=user, data=data)
    return if_match.tag(UserRead.model_validate(user))


async def get_user_by_id(session: SessionDep, user_id: Annotated[uuid.UUID, Path()]) -> User:
    return await service.get_user(session, user_id=user_id)


TargetUser = Annotated[User, Depends(get_user_by_id)]


@admin_router.get("", response_model=Page[UserRead], responses=problem_responses(422))
async def list_users(session: SessionDep, page: PageQuery) -> Page[UserRead]:
    users, total = await service.list_users(session, limit=page.limit, offset=page.offset)
    return Page[UserRead].of(users, total=total, params=page)


@admin_router.get(
    "/{user_id}",
    response_model=UserRead,
    responses={**read_responses(), **problem_responses(404, 422)},
)
async def read_user(user: TargetUser, if_none_match: IfNoneMatch) -> Response:
    return if_none_match.respond(UserRead.model_validate(user))


@admin_router.patch(
    "/{user_id}",
    response_model=UserRead,
    responses={**write_responses(), **problem_responses(400, 404, 409, 422)},
)
async def update_user(
    session: SessionDep, user: TargetUser, data: UserUpdateAdmin, if_match: IfMatch
) -> UserRead:
    """Change a user's name, role or active flag. The last admin stays an admin."""
    await if_match.check(session, user, UserRead)
    user = await service.update_user(session, user=user, data=data)
    return if_match.tag(UserRead.model_validate(user))


@admin_router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses={**write_responses(204), **problem_responses(404, 409, 422)},
)
async def delete_user(session: SessionDep, user: TargetUser, if_match: IfMatch) -> None:
    await if_match.check(session, user, UserRead)
    await service.delete_user(session, user=user)

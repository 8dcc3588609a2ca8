"""User accounts. Services take the session first, add and flush, and never commit."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security import hash_password, verify_password
from app.users.exceptions import (
    EmailAlreadyRegistered,
    LastAdmin,
    UserNotFound,
    WrongCurrentPassword,
)
from app.users.models import Role, User
from app.users.schemas import UserCreate, UserUpdateAdmin, UserUpdateMe


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound
    return user


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    result = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return result.scalar_one_or_none()


async def create_user(session: AsyncSession, *, data: UserCreate, role: Role = Role.USER) -> User:
    """Raises EmailAlreadyRegistered, also when a concurrent request wins the race."""
    if await get_user_by_email(session, email=data.email) is not None:
        raise EmailAlreadyRegistered
    user = User(
        email=data.email,
        password_hash=await hash_password(data.password),
        full_name=data.full_name,
        role=role,
    )
    try:
        # A savepoint, so a lost race leaves the request's transaction usable.
        async with session.begin_nested():
            session.add(user)
    except IntegrityError as exc:
        raise EmailAlreadyRegistered from exc
    return user


async def list_users(session: AsyncSession, *, limit: int, offset: int) -> tuple[list[User], int]:
    total = await session.scalar(select(func.count()).select_from(User))
    result = await session.execute(
        select(User).order_by(User.created_at, User.id).limit(limit).offset(offset)
    )
    return list(result.scalars()), total or 0


async def update_me(session: AsyncSession, *, user: User, data: UserUpdateMe) -> User:
    changes = data.model_dump(exclude_unset=True, exclude={"password", "current_password"})
    if data.password is not None:
        matches, _ = await verify_password(data.current_password or "", user.password_hash)
        if not matches:
            raise WrongCurrentPassword
        user.password_hash = await hash_password(data.password)
        user.token_version += 1  # signs the user out everywhere
    for field, value in changes.items():
        setattr(user, field, value)
    await session.flush()
    return user


async def _ensure_not_last_admin(session: AsyncSession, *, user: User) -> None:
    """Raises LastAdmin if `user` is the only active admin.

    Two admins demoting each other at once must not both pass a plain count (write skew), so
    the active admins' rows are locked first (FOR UPDATE, in id order so concurrent callers
    queue instead of deadlocking). The loser waits for the winner's commit and then counts
    what it left. SQLite has no row locks and needs none: BEGIN IMMEDIATE already runs one
    writing transaction at a time.
    """
    if not (user.is_admin and user.is_active):
        return
    admins = await session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    if not any(admin_id != user.id for admin_id in admins):
        raise LastAdmin


async def update_user(session: AsyncSession, *, user: User, data: UserUpdateAdmin) -> User:
    changes = data.model_dump(exclude_unset=True)
    demoted = changes.get("role", user.role) is not Role.ADMIN
    deactivated = changes.get("is_active", user.is_active) is False
    if demoted or deactivated:
        await _ensure_not_last_admin(session, user=user)
    if deactivated and user.is_active:
        user.token_version += 1
    for field, value in changes.items():
        setattr(user, field, value)
    await session.flush()
    return user


async def delete_user(session: AsyncSession, *, user: User) -> None:
    await _ensure_not_last_admin(session, user=user)
    await session.delete(user)
    await session.flush()

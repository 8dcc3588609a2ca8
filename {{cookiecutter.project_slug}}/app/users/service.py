"""User accounts. Services take the session first, add and flush, and never commit.

Password hashing takes a while, so it runs with no transaction open: before the first
statement, or after `end_read_only_transaction` has ended one that only read. The account is
then read again, locked, by the transaction that writes (`lock_user`).
"""

import uuid

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.security import Passwords
from app.db.session import end_read_only_transaction
from app.users.exceptions import (
    AccountChanged,
    EmailAlreadyRegistered,
    LastAdmin,
    UserNotFound,
    WrongCurrentPassword,
)
from app.users.models import Principal, Role, User
from app.users.schemas import UserCreate, UserUpdateAdmin, UserUpdateMe

# The account check every protected request makes: the token's user exists, is active and
# still has the token's version (bound parameters `user_id` and `token_version`). A resource
# query may include these conditions to check the account in its own round trip
# (app/items/service.py, `get_item_for_account`).
VALID_ACCOUNT = (
    User.id == bindparam("user_id"),
    User.is_active.is_(True),
    User.token_version == bindparam("token_version"),
)

# Built once, with their values as parameters: a statement object keeps its cache key, so a
# request spends nothing on building the query or finding its compiled form.
_PRINCIPAL_ROLE = select(User.role).where(*VALID_ACCOUNT)
_ACCOUNT = select(User).where(*VALID_ACCOUNT)


async def get_principal(
    session: AsyncSession, *, user_id: uuid.UUID, token_version: int
) -> Principal | None:
    """The caller, if its account exists, is active and still has this token version.

    Every protected request runs this, so it is one indexed query of one column, executed on
    the session's connection as plain SQL rather than loading a `User` into the session.
    """
    connection = await session.connection()
    values = {"user_id": user_id, "token_version": token_version}
    role = (await connection.execute(_PRINCIPAL_ROLE, values)).scalar_one_or_none()
    return None if role is None else Principal(id=user_id, role=role)


async def get_account(
    session: AsyncSession, *, user_id: uuid.UUID, token_version: int
) -> User | None:
    """The caller's whole account, checked as `get_principal` checks it, in the same query."""
    values = {"user_id": user_id, "token_version": token_version}
    user: User | None = await session.scalar(_ACCOUNT, values)
    return user


async def get_user(session: AsyncSession, *, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise UserNotFound
    return user


async def get_user_by_email(session: AsyncSession, *, email: str) -> User | None:
    result = await session.execute(select(User).where(func.lower(User.email) == email.lower()))
    return result.scalar_one_or_none()


async def lock_user(session: AsyncSession, *, user_id: uuid.UUID) -> User | None:
    """The user as stored now, row-locked until the transaction ends (on PostgreSQL; SQLite's
    write transactions hold the whole database's write lock anyway)."""
    return await session.get(User, user_id, with_for_update=True, populate_existing=True)


async def create_user(
    session: AsyncSession, *, passwords: Passwords, data: UserCreate, role: Role = Role.USER
) -> User:
    """Raises EmailAlreadyRegistered, also when a concurrent request wins the race.

    The password is hashed before the first statement, so a request that starts here holds
    no transaction while it hashes (and a taken email costs the same hash as a free one).
    """
    password_hash = await passwords.hash(data.password)
    if await get_user_by_email(session, email=data.email) is not None:
        raise EmailAlreadyRegistered
    user = User(
        email=data.email,
        password_hash=password_hash,
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


async def update_me(
    session: AsyncSession, *, passwords: Passwords, user: User, data: UserUpdateMe
) -> User:
    """A new password needs the current one. Both hashings run with no transaction open; the
    account must be as it was checked when the change is written, else AccountChanged."""
    changes = data.model_dump(exclude_unset=True, exclude={"password", "current_password"})
    if data.password is not None:
        checked = (user.password_hash, user.token_version)
        await end_read_only_transaction(session)
        matches, _ = await passwords.verify(data.current_password or "", user.password_hash)
        if not matches:
            raise WrongCurrentPassword
        new_hash = await passwords.hash(data.password)
        current = await lock_user(session, user_id=user.id)
        if current is None or not current.is_active:
            raise AccountChanged
        if (current.password_hash, current.token_version) != checked:
            raise AccountChanged
        user = current
        user.password_hash = new_hash
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

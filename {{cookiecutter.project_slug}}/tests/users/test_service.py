import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.security import Passwords
from app.users import service
from app.users.exceptions import (
    AccountChanged,
    EmailAlreadyRegistered,
    UserNotFound,
    WrongCurrentPassword,
)
from app.users.models import Role, User
from app.users.schemas import UserCreate, UserUpdateAdmin, UserUpdateMe
from tests.factories import DEFAULT_PASSWORD
from tests.passwords import ChangedWhileChecking


async def test_create_user_hashes_with_argon2id(
    session: AsyncSession, passwords: Passwords
) -> None:
    user = await service.create_user(
        session,
        passwords=passwords,
        data=UserCreate(email="Mixed@Example.com", password="long enough"),
    )
    assert user.email == "mixed@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert user.role is Role.USER


async def test_create_user_refuses_a_taken_email(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    with pytest.raises(EmailAlreadyRegistered):
        await service.create_user(
            session,
            passwords=passwords,
            data=UserCreate(email=user.email.upper(), password="long enough"),
        )


async def test_database_refuses_a_duplicate_even_past_the_check(
    session: AsyncSession, passwords: Passwords, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique index, not the pre-check, is what holds when two requests race."""

    async def lost_the_race(session: AsyncSession, *, email: str) -> User | None:
        return None  # what the check saw just before a concurrent insert landed

    monkeypatch.setattr(service, "get_user_by_email", lost_the_race)
    with pytest.raises(EmailAlreadyRegistered):
        await service.create_user(
            session, passwords=passwords, data=UserCreate(email=user.email, password="long enough")
        )
    # The savepoint kept the transaction usable.
    assert (await service.get_user(session, user_id=user.id)).email == user.email


@pytest.mark.parametrize("spelling", [str.upper, str.title, lambda email: email])
async def test_database_itself_refuses_another_case_of_a_taken_email(
    session: AsyncSession, user: User, spelling: Callable[[str], str]
) -> None:
    """Past every check in the code, written as raw SQL: the index on lower(email) holds."""
    statement = insert(User).values(
        id=uuid.uuid4(), email=spelling(user.email), password_hash="x", role=Role.USER
    )
    with pytest.raises(IntegrityError):
        async with session.begin_nested():
            await session.execute(statement)


async def test_get_missing_user_raises(session: AsyncSession, user: User) -> None:
    await session.delete(user)
    await session.flush()
    with pytest.raises(UserNotFound):
        await service.get_user(session, user_id=user.id)


async def test_password_change_bumps_the_token_version(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    before = user.token_version
    await service.update_me(
        session,
        passwords=passwords,
        user=user,
        data=UserUpdateMe(password="new password!", current_password=DEFAULT_PASSWORD),
    )
    assert user.token_version == before + 1


async def test_password_change_needs_the_current_password(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    with pytest.raises(WrongCurrentPassword):
        await service.update_me(
            session,
            passwords=passwords,
            user=user,
            data=UserUpdateMe(password="new password!", current_password="no"),
        )


async def test_deactivation_bumps_the_token_version(
    session: AsyncSession, user: User, admin: User
) -> None:
    before = user.token_version
    await service.update_user(session, user=user, data=UserUpdateAdmin(is_active=False))
    assert user.is_active is False
    assert user.token_version == before + 1


@pytest.mark.parametrize(
    "changes",
    [{"password_hash": "$argon2id$changed"}, {"token_version": 99}, {"is_active": False}],
    ids=["password-changed", "signed-out-everywhere", "deactivated"],
)
async def test_a_password_change_checked_against_a_changed_account_is_a_conflict(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    user: User,
    changes: dict[str, object],
) -> None:
    """Both hashings run with no transaction open; the change is written only if the account,
    read again and locked, still is what was checked."""
    passwords = ChangedWhileChecking(sessionmaker, **changes)
    with pytest.raises(AccountChanged):
        await service.update_me(
            session,
            passwords=passwords,
            user=user,
            data=UserUpdateMe(password="new password!", current_password=DEFAULT_PASSWORD),
        )

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service
from app.auth.exceptions import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from app.auth.models import RefreshToken
from app.core.security import Passwords, Tokens, digest_refresh_token
from app.users.models import User
from tests.factories import DEFAULT_PASSWORD
from tests.passwords import ChangedWhileChecking


async def test_authenticate_returns_the_user(
    session: AsyncSession, passwords: Passwords, user: User
) -> None:
    found = await service.authenticate(
        session, passwords=passwords, email=user.email, password=DEFAULT_PASSWORD
    )
    assert found.id == user.id


@pytest.mark.parametrize(
    ("email", "password"),
    [("nobody@example.com", DEFAULT_PASSWORD), (None, "wrong password")],
    ids=["unknown-email", "wrong-password"],
)
async def test_authenticate_rejects_bad_credentials(
    session: AsyncSession, passwords: Passwords, user: User, email: str | None, password: str
) -> None:
    with pytest.raises(InvalidCredentials):
        await service.authenticate(
            session, passwords=passwords, email=email or user.email, password=password
        )


async def test_issue_tokens_stores_only_a_digest(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    pair = await service.issue_tokens(session, tokens=tokens, user=user)
    stored = await session.scalar(select(RefreshToken).where(RefreshToken.user_id == user.id))
    assert stored is not None
    assert stored.token_hash == digest_refresh_token(pair.refresh_token)
    assert tokens.decode_access_token(pair.access_token).user_id == user.id


async def test_rotation_keeps_the_family_and_spends_the_token(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    first = await service.issue_tokens(session, tokens=tokens, user=user)
    second = await service.rotate_refresh_token(
        session, tokens=tokens, refresh_token=first.refresh_token
    )
    rows = (
        await session.scalars(select(RefreshToken).where(RefreshToken.user_id == user.id))
    ).all()
    assert len(rows) == 2
    assert len({row.family_id for row in rows}) == 1
    by_hash = {row.token_hash: row for row in rows}
    assert by_hash[digest_refresh_token(first.refresh_token)].revoked_at is not None
    assert by_hash[digest_refresh_token(second.refresh_token)].revoked_at is None


async def test_reuse_raises_an_error_that_keeps_the_revocation(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    first = await service.issue_tokens(session, tokens=tokens, user=user)
    await service.rotate_refresh_token(session, tokens=tokens, refresh_token=first.refresh_token)
    with pytest.raises(RefreshTokenReused) as caught:
        await service.rotate_refresh_token(
            session, tokens=tokens, refresh_token=first.refresh_token
        )
    assert caught.value.keep_changes is True
    live = await session.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
    )
    assert live == 0


async def test_revoke_session_with_unknown_token_raises(session: AsyncSession) -> None:
    with pytest.raises(InvalidRefreshToken):
        await service.revoke_session(session, refresh_token="unknown")


async def test_revoke_all_sessions_bumps_the_version_and_revokes_every_token(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    version = user.token_version
    for _ in range(2):
        await service.issue_tokens(session, tokens=tokens, user=user)
    await service.revoke_all_sessions(session, user=user)
    assert user.token_version == version + 1
    live = await session.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
    )
    assert live == 0


@pytest.mark.parametrize(
    "changes",
    [{"password_hash": "$argon2id$changed"}, {"is_active": False}],
    ids=["password-changed", "deactivated"],
)
async def test_a_login_checked_against_a_changed_account_fails(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    user: User,
    changes: dict[str, object],
) -> None:
    """The password is checked with no transaction open; the login is written only if the
    account, read again and locked, still is what was checked."""
    passwords = ChangedWhileChecking(sessionmaker, **changes)
    with pytest.raises(InvalidCredentials):
        await service.authenticate(
            session, passwords=passwords, email=user.email, password=DEFAULT_PASSWORD
        )

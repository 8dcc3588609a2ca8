import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service
from app.auth.exceptions import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from app.auth.models import RefreshToken
from app.core.security import Passwords, Tokens, digest_secret_token
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
    assert stored.token_hash == digest_secret_token(pair.refresh_token)
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
    assert by_hash[digest_secret_token(first.refresh_token)].revoked_at is not None
    assert by_hash[digest_secret_token(second.refresh_token)].revoked_at is None


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


async def _token_row(session: AsyncSession, refresh_token: str) -> RefreshToken:
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest_secret_token(refresh_token))
    )
    assert row is not None
    return row


async def test_rotation_never_extends_a_login_past_its_family_lifetime(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    """Each token lives REFRESH_TOKEN_EXPIRE_DAYS, but no later than the login's end."""
    lifetime = tokens.family_lifetime
    first = await service.issue_tokens(session, tokens=tokens, user=user)
    row = await _token_row(session, first.refresh_token)
    # The login happened long ago: one hour of it is left.
    login = datetime.now(UTC) - lifetime + timedelta(hours=1)
    row.family_issued_at = login
    await session.flush()

    second = await service.rotate_refresh_token(
        session, tokens=tokens, refresh_token=first.refresh_token
    )
    next_row = await _token_row(session, second.refresh_token)
    assert next_row.family_issued_at == login
    assert next_row.expires_at == login + lifetime  # not now + 7 days

    # Once the login's lifetime is over, its live token no longer refreshes.
    next_row.family_issued_at = login - timedelta(hours=2)
    await session.flush()
    with pytest.raises(InvalidRefreshToken) as caught:
        await service.rotate_refresh_token(
            session, tokens=tokens, refresh_token=second.refresh_token
        )
    assert not isinstance(caught.value, RefreshTokenReused)


async def test_a_new_login_starts_a_family_of_its_own_now(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    before = datetime.now(UTC)
    pair = await service.issue_tokens(session, tokens=tokens, user=user)
    row = await _token_row(session, pair.refresh_token)
    assert before <= row.family_issued_at == row.issued_at
    assert row.expires_at == row.issued_at + tokens.refresh_lifetime


async def _family_ids(session: AsyncSession, user: User) -> set[uuid.UUID]:
    rows = await session.scalars(
        select(RefreshToken.family_id).where(RefreshToken.user_id == user.id)
    )
    return set(rows)


async def test_prune_deletes_only_logins_that_ended_before_the_cutoff(
    session: AsyncSession, tokens: Tokens, user: User
) -> None:
    now = datetime.now(UTC)
    long_ago = now - timedelta(days=60)

    async def login(*, rotated: bool = False) -> tuple[uuid.UUID, str]:
        pair = await service.issue_tokens(session, tokens=tokens, user=user)
        if rotated:
            pair = await service.rotate_refresh_token(
                session, tokens=tokens, refresh_token=pair.refresh_token
            )
        row = await _token_row(session, pair.refresh_token)
        return row.family_id, pair.refresh_token

    async def set_family(family: uuid.UUID, **values: datetime) -> None:
        await session.execute(
            update(RefreshToken).where(RefreshToken.family_id == family).values(**values)
        )

    expired_long_ago, _ = await login(rotated=True)
    await set_family(expired_long_ago, expires_at=long_ago, revoked_at=long_ago)
    expired_lately, _ = await login()
    await set_family(expired_lately, expires_at=now - timedelta(days=1))
    running, _ = await login(rotated=True)  # its spent token stays: reuse detection needs it
    logged_out, token = await login()
    await service.revoke_session(session, refresh_token=token)
    await set_family(logged_out, revoked_at=long_ago)

    deleted = await service.prune_refresh_tokens(session, older_than=now - timedelta(days=30))

    assert deleted == 3  # the two rows of the first login, the one of the logged-out one
    assert await _family_ids(session, user) == {expired_lately, running}
    rows_running = await session.scalar(
        select(func.count()).select_from(RefreshToken).where(RefreshToken.family_id == running)
    )
    assert rows_running == 2


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

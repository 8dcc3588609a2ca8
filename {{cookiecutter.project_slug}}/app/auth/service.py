"""Login, refresh-token rotation with reuse detection, and logout (one login or all)."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.exceptions import InvalidCredentials, InvalidRefreshToken, RefreshTokenReused
from app.auth.models import RefreshToken
from app.auth.schemas import TokenPair
from app.core.config import get_settings
from app.core.errors import is_foreign_key_violation
from app.core.security import (
    burn_password_check,
    create_access_token,
    digest_refresh_token,
    new_refresh_token,
    verify_password,
)
from app.users.models import User
from app.users.service import get_user_by_email


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    """The active user with these credentials; one error for every way it can fail."""
    user = await get_user_by_email(session, email=email)
    if user is None:
        await burn_password_check(password)
        raise InvalidCredentials
    matches, new_hash = await verify_password(password, user.password_hash)
    if not matches or not user.is_active:
        raise InvalidCredentials
    if new_hash is not None:
        # An outdated hash (bcrypt, or weaker Argon2 settings) is replaced now that we can.
        user.password_hash = new_hash
    return user


def _family_ends_at(family_issued_at: datetime) -> datetime:
    """A login's absolute end: refreshing never extends it past this."""
    return family_issued_at + timedelta(days=get_settings().REFRESH_TOKEN_FAMILY_MAX_DAYS)


async def issue_tokens(
    session: AsyncSession,
    *,
    user: User,
    family: RefreshToken | None = None,
) -> TokenPair:
    """A new pair: for a new login, or as the next token of `family`'s login (a rotation).

    Raises InvalidCredentials when the user was deleted after it was read."""
    now = datetime.now(UTC)
    family_issued_at = family.family_issued_at if family else now
    refresh_token = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family.family_id if family else uuid.uuid4(),
            family_issued_at=family_issued_at,
            token_hash=digest_refresh_token(refresh_token),
            token_version=user.token_version,
            issued_at=now,
            expires_at=min(
                now + timedelta(days=get_settings().REFRESH_TOKEN_EXPIRE_DAYS),
                _family_ends_at(family_issued_at),
            ),
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        if not is_foreign_key_violation(exc):
            raise
        raise InvalidCredentials from exc  # the account is gone
    access_token, expires_in = create_access_token(user.id, version=user.token_version, now=now)
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)


async def _find(session: AsyncSession, refresh_token: str) -> RefreshToken:
    stored = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest_refresh_token(refresh_token))
    )
    if stored is None:
        raise InvalidRefreshToken
    return stored


async def _revoke(session: AsyncSession, *where: ColumnElement[bool]) -> int:
    """Revoke the live refresh tokens that match; returns how many were live."""
    result = await session.execute(
        update(RefreshToken)
        .where(*where, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    revoked: int = result.rowcount  # type: ignore[attr-defined]
    return revoked


async def rotate_refresh_token(session: AsyncSession, *, refresh_token: str) -> TokenPair:
    """Spend a refresh token for a new pair. A spent token presented again revokes its family."""
    stored = await _find(session, refresh_token)
    # Spend it atomically: of two requests racing with one token, only one gets a new pair,
    # and a token that was already spent (or logged out) is a replay.
    if await _revoke(session, RefreshToken.id == stored.id) != 1:
        await _revoke(session, RefreshToken.family_id == stored.family_id)
        raise RefreshTokenReused
    now = datetime.now(UTC)
    if stored.expires_at <= now or _family_ends_at(stored.family_issued_at) <= now:
        raise InvalidRefreshToken
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active or user.token_version != stored.token_version:
        raise InvalidRefreshToken
    try:
        return await issue_tokens(session, user=user, family=stored)
    except InvalidCredentials as exc:
        raise InvalidRefreshToken from exc


async def revoke_session(session: AsyncSession, *, refresh_token: str) -> None:
    """Log out: every token of this login stops working. Repeating it is harmless."""
    stored = await _find(session, refresh_token)
    await _revoke(session, RefreshToken.family_id == stored.family_id)


async def revoke_all_sessions(session: AsyncSession, *, user: User) -> None:
    """Log out everywhere: every access and refresh token of the user stops working."""
    user.token_version += 1
    await _revoke(session, RefreshToken.user_id == user.id)
    await session.flush()


async def prune_refresh_tokens(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete the logins that ended before `older_than`; returns how many rows went.

    A login (family) is deleted whole, once every one of its tokens was revoked or had expired
    before `older_than`. Rotated tokens of a login still running are kept: presenting one
    again is how a stolen token is detected (rotate_refresh_token)."""
    ended = (
        select(RefreshToken.family_id)
        .group_by(RefreshToken.family_id)
        .having(
            func.max(func.coalesce(RefreshToken.revoked_at, RefreshToken.expires_at)) < older_than
        )
    )
    result = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.family_id.in_(ended))
        .execution_options(synchronize_session=False)
    )
    deleted: int = result.rowcount  # type: ignore[attr-defined]
    return deleted

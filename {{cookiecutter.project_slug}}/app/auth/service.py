"""Registration, login, refresh-token rotation with reuse detection, logout (one login or all),
and the account emails' tokens: password reset and email verification.

The objects built from the settings (`Tokens`, `Passwords`) come in as keyword arguments.
"""

import uuid
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.account_tokens import find_usable_token, spend_account_token
from app.auth.exceptions import (
    EmailNotVerified,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    InvalidVerificationToken,
    RefreshTokenReused,
)
from app.auth.jobs import send_password_reset_email, send_verification_email
from app.auth.models import AccountTokenPurpose, RefreshToken
from app.auth.schemas import TokenPair
from app.core.errors import is_foreign_key_violation
from app.core.security import Passwords, Tokens, digest_secret_token, new_secret_token
from app.db.base import utcnow
from app.db.session import end_read_only_transaction
from app.jobs.service import enqueue
from app.users.jobs import send_welcome_email
from app.users.models import User
from app.users.schemas import UserCreate
from app.users.service import create_user, get_user_by_email, lock_user


async def register(session: AsyncSession, *, passwords: Passwords, data: UserCreate) -> User:
    """Create an account, and in the same transaction the job that mails it a verification
    link: the email goes out only if the account is stored, and is not lost if it is."""
    user = await create_user(session, passwords=passwords, data=data)
    await enqueue(session, send_verification_email, email=user.email)
    return user


async def authenticate(
    session: AsyncSession,
    *,
    passwords: Passwords,
    email: str,
    password: str,
    require_verified_email: bool = False,
) -> User:
    """The active user with these credentials; one error for every way it can fail, but one:
    with `require_verified_email`, the right password of an unverified address is told so
    (EmailNotVerified), since only the account's owner can get that far.

    The password is checked with no transaction open (the lookup's read-only one is ended
    first): the check takes a while, and must hold neither a connection nor a lock. The
    account is then read again, locked, in the transaction that writes the login, and must
    still have the password that was checked.
    """
    user = await get_user_by_email(session, email=email)
    await end_read_only_transaction(session)
    if user is None:
        await passwords.burn(password)
        raise InvalidCredentials
    checked_hash = user.password_hash
    matches, new_hash = await passwords.verify(password, checked_hash)
    if not matches or not user.is_active:
        raise InvalidCredentials
    current = await lock_user(session, user_id=user.id)
    if current is None or not current.is_active or current.password_hash != checked_hash:
        raise InvalidCredentials  # changed (or gone) while the password was being checked
    if new_hash is not None:
        # An outdated hash (bcrypt, or weaker Argon2 settings) is replaced now that we can.
        current.password_hash = new_hash
    if require_verified_email and current.email_verified_at is None:
        raise EmailNotVerified
    return current


def _family_ends_at(family_issued_at: datetime, tokens: Tokens) -> datetime:
    """A login's absolute end: refreshing never extends it past this."""
    return family_issued_at + tokens.family_lifetime


async def issue_tokens(
    session: AsyncSession,
    *,
    tokens: Tokens,
    user: User,
    family: RefreshToken | None = None,
) -> TokenPair:
    """A new pair: for a new login, or as the next token of `family`'s login (a rotation).

    Raises InvalidCredentials when the user was deleted after it was read."""
    now = datetime.now(UTC)
    family_issued_at = family.family_issued_at if family else now
    refresh_token = new_secret_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family.family_id if family else uuid.uuid4(),
            family_issued_at=family_issued_at,
            token_hash=digest_secret_token(refresh_token),
            token_version=user.token_version,
            issued_at=now,
            expires_at=min(
                now + tokens.refresh_lifetime, _family_ends_at(family_issued_at, tokens)
            ),
        )
    )
    try:
        await session.flush()
    except IntegrityError as exc:
        if not is_foreign_key_violation(exc):
            raise
        raise InvalidCredentials from exc  # the account is gone
    access_token, expires_in = tokens.create_access_token(
        user.id, version=user.token_version, now=now
    )
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=expires_in)


async def _find(session: AsyncSession, refresh_token: str) -> RefreshToken:
    stored = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == digest_secret_token(refresh_token))
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


async def rotate_refresh_token(
    session: AsyncSession, *, tokens: Tokens, refresh_token: str
) -> TokenPair:
    """Spend a refresh token for a new pair. A spent token presented again revokes its family."""
    stored = await _find(session, refresh_token)
    # Spend it atomically: of two requests racing with one token, only one gets a new pair,
    # and a token that was already spent (or logged out) is a replay.
    if await _revoke(session, RefreshToken.id == stored.id) != 1:
        await _revoke(session, RefreshToken.family_id == stored.family_id)
        raise RefreshTokenReused
    now = datetime.now(UTC)
    if stored.expires_at <= now or _family_ends_at(stored.family_issued_at, tokens) <= now:
        raise InvalidRefreshToken
    user = await session.get(User, stored.user_id)
    if user is None or not user.is_active or user.token_version != stored.token_version:
        raise InvalidRefreshToken
    try:
        return await issue_tokens(session, tokens=tokens, user=user, family=stored)
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


# --- Account emails: password reset and email verification ------------------------------------
#
# A request only enqueues the job that mails the token, with the address it was given: it does
# the same work, and so takes about the same time, whether or not an account has the address.
# The job looks the account up and issues the token (app/auth/jobs.py). The token exists in the
# email alone; the database keeps its digest, the address it went to, its expiry and its use.


async def request_password_reset(session: AsyncSession, *, email: str) -> None:
    await enqueue(session, send_password_reset_email, email=email)


async def request_verification_email(session: AsyncSession, *, email: str) -> None:
    await enqueue(session, send_verification_email, email=email)


async def reset_password(
    session: AsyncSession, *, passwords: Passwords, token: str, new_password: str
) -> None:
    """Set the password of the token's account and sign it out everywhere.

    A token that does not work is refused before any hashing, so a forged one costs a lookup.
    A working one is checked with no transaction open, then spent and applied in the one that
    writes. Receiving the token proves the address too: an unverified one becomes verified."""
    purpose = AccountTokenPurpose.PASSWORD_RESET
    stored = await find_usable_token(session, token=token, purpose=purpose, error=InvalidResetToken)
    await end_read_only_transaction(session)
    password_hash = await passwords.hash(new_password)
    user = await spend_account_token(session, stored, error=InvalidResetToken)
    user.password_hash = password_hash
    user.token_version += 1  # every access and refresh token issued before stops working
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    await session.flush()


async def verify_email(session: AsyncSession, *, token: str) -> None:
    """Mark the token's address verified; the first time, the welcome email follows."""
    purpose = AccountTokenPurpose.EMAIL_VERIFICATION
    stored = await find_usable_token(
        session, token=token, purpose=purpose, error=InvalidVerificationToken
    )
    user = await spend_account_token(session, stored, error=InvalidVerificationToken)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        await enqueue(session, send_welcome_email, user_id=user.id)
    await session.flush()

"""The single-use tokens the account emails carry (password reset, email verification):
issued by the job that mails one, found and spent by the request that presents it."""

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import AccountToken, AccountTokenPurpose
from app.core.errors import AppError
from app.core.security import digest_secret_token, new_secret_token
from app.db.base import utcnow
from app.users.models import User
from app.users.service import lock_user


async def issue_account_token(
    session: AsyncSession,
    *,
    token_id: uuid.UUID,
    user: User,
    purpose: AccountTokenPurpose,
    lifetime: timedelta,
) -> str | None:
    """A new token for `user`, stored as its digest under `token_id` (the mailing job's id).

    A retried job replaces the token of its earlier try, whose email may or may not have gone
    out, so one job never leaves two tokens that work. None if that token was used already:
    its email arrived, and the job has nothing left to send."""
    now = utcnow()
    stored = await session.get(AccountToken, token_id, with_for_update=True)
    if stored is not None and stored.used_at is not None:
        return None
    if stored is None:
        stored = AccountToken(id=token_id, user_id=user.id, purpose=purpose)
        session.add(stored)
    token = new_secret_token()
    stored.email = user.email
    stored.token_hash = digest_secret_token(token)
    stored.issued_at = now
    stored.expires_at = now + lifetime
    await session.flush()
    return token


async def find_usable_token(
    session: AsyncSession, *, token: str, purpose: AccountTokenPurpose, error: type[AppError]
) -> AccountToken:
    stored = await session.scalar(
        select(AccountToken).where(
            AccountToken.token_hash == digest_secret_token(token), AccountToken.purpose == purpose
        )
    )
    if stored is None or stored.used_at is not None or stored.expires_at <= utcnow():
        raise error
    return stored


async def spend_account_token(
    session: AsyncSession, stored: AccountToken, *, error: type[AppError]
) -> User:
    """Mark the token used (once: of two requests racing with it, one wins), with every other
    unused token of its purpose for the account; the account, locked, if it still has the
    address the token was mailed to."""
    now = utcnow()
    result = await session.execute(
        update(AccountToken)
        .where(AccountToken.id == stored.id, AccountToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise error
    user = await lock_user(session, user_id=stored.user_id)
    if user is None or not user.is_active or user.email.lower() != stored.email.lower():
        raise error
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user.id,
            AccountToken.purpose == stored.purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    return user

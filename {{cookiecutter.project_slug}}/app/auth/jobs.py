"""Jobs of the auth domain: the password-reset and the verification emails.

A request enqueues one with the address it was given (app/auth/service.py); the job looks the
account up, so the request does the same work whether or not the address has an account. The
job issues the token in a transaction of its own, commits it, then sends the email: a token
is stored before any email carries it, and a retry replaces the token of the try before.
"""

import logging
from datetime import timedelta

from app.auth.account_tokens import issue_account_token
from app.auth.models import AccountTokenPurpose
from app.core.config import Settings
from app.email import service as email
from app.jobs.registry import JobContext, job
from app.users.service import get_user_by_email

logger = logging.getLogger(__name__)


def _link(settings: Settings, page: str, token: str) -> str:
    """What the email tells the reader to do with the token: open the front end's page, or,
    with no FRONTEND_URL, send the token to the API."""
    if settings.FRONTEND_URL is not None:
        return f"Open {str(settings.FRONTEND_URL).rstrip('/')}/{page}#token={token}"
    return f"Send this token to the API ({page}): {token}"


async def _mail_token(
    context: JobContext,
    *,
    address: str,
    purpose: AccountTokenPurpose,
    lifetime: timedelta,
    template: str,
    page: str,
) -> None:
    async with context.sessionmaker() as session, session.begin():
        user = await get_user_by_email(session, email=address)
        if user is None or not user.is_active:
            logger.info("email: %s skipped, no active account has the address", template)
            return
        if purpose is AccountTokenPurpose.EMAIL_VERIFICATION and user.email_verified_at:
            logger.info("email: %s skipped, the address is verified already", template)
            return
        token = await issue_account_token(
            session, token_id=context.id, user=user, purpose=purpose, lifetime=lifetime
        )
        if token is None:
            logger.info("email: %s skipped, its token was used already", template)
            return
        to, name = user.email, user.full_name or user.email
    settings = context.settings
    minutes = int(lifetime.total_seconds() // 60)
    message = email.build_message(
        settings,
        to=to,
        template=template,
        values={
            "name": name,
            "email": to,
            "service": settings.project_name,
            "action": _link(settings, page, token),
            "valid_for": f"{minutes} minutes" if minutes < 120 else f"{minutes // 60} hours",
        },
        message_id=f"job-{context.id}",
    )
    await email.send(settings, message)


@job("send_password_reset_email")
async def send_password_reset_email(context: JobContext, *, email: str) -> None:
    """Mail a single-use password-reset token to the account with this address, if any."""
    await _mail_token(
        context,
        address=email,
        purpose=AccountTokenPurpose.PASSWORD_RESET,
        lifetime=timedelta(minutes=context.settings.PASSWORD_RESET_TOKEN_MINUTES),
        template="password_reset",
        page="reset-password",
    )


@job("send_verification_email")
async def send_verification_email(context: JobContext, *, email: str) -> None:
    """Mail a verification token to the account with this address, unless it is verified."""
    await _mail_token(
        context,
        address=email,
        purpose=AccountTokenPurpose.EMAIL_VERIFICATION,
        lifetime=timedelta(hours=context.settings.EMAIL_VERIFICATION_TOKEN_HOURS),
        template="verify_email",
        page="verify-email",
    )

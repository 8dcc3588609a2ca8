"""Auth routes. `router` is public: registration, login, token refresh, logout, password
reset and email verification. `protected_router` needs a signed-in user (app/api.py mounts it
on the protected router)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.auth import service
from app.auth.dependencies import CurrentUser, PasswordsDep, SettingsDep, TokensDep
from app.auth.schemas import (
    EmailRequest,
    EmailRequestAccepted,
    EmailVerification,
    LoginFormDep,
    PasswordResetConfirm,
    RefreshRequest,
    TokenPair,
)
from app.core.errors import problem_responses
from app.core.ratelimit import (
    RateLimiterDep,
    limit_email_requests,
    limit_login,
    limit_login_failures,
    limit_register,
    recipient_key,
)
from app.db.session import SessionDep
from app.users.schemas import UserCreate, UserRead

router = APIRouter()
protected_router = APIRouter()


async def no_store(response: Response) -> None:
    """Responses carrying tokens must not be kept by any cache (RFC 6749, section 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(400, 409, 422),
    dependencies=[Depends(limit_register)],
)
async def register(session: SessionDep, passwords: PasswordsDep, data: UserCreate) -> UserRead:
    """Create an account. The email is unique, whatever its case. A verification email
    follows (a background job, stored with the account)."""
    user = await service.register(session, passwords=passwords, data=data)
    return UserRead.model_validate(user)


@router.post(
    "/login",
    response_model=TokenPair,
    responses=problem_responses(400, 401, 403, 422),
    dependencies=[
        Depends(limit_login),
        Depends(limit_login_failures, scope="function"),
        Depends(no_store),
    ],
)
async def login(
    session: SessionDep,
    passwords: PasswordsDep,
    tokens: TokensDep,
    settings: SettingsDep,
    form: LoginFormDep,
) -> TokenPair:
    """Exchange email (`username`) and password for an access and a refresh token. With
    REQUIRE_VERIFIED_EMAIL, an unverified address gets 403 `email_not_verified` instead."""
    user = await service.authenticate(
        session,
        passwords=passwords,
        email=form.username,
        password=form.password,
        require_verified_email=settings.REQUIRE_VERIFIED_EMAIL,
    )
    return await service.issue_tokens(session, tokens=tokens, user=user)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=problem_responses(400, 401, 422),
    dependencies=[Depends(no_store)],
)
async def refresh(session: SessionDep, tokens: TokensDep, data: RefreshRequest) -> TokenPair:
    """Spend a refresh token for a new pair; each refresh token works once."""
    return await service.rotate_refresh_token(
        session, tokens=tokens, refresh_token=data.refresh_token
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(400, 401, 422),
)
async def logout(session: SessionDep, data: RefreshRequest) -> None:
    """Revoke the login this refresh token belongs to."""
    await service.revoke_session(session, refresh_token=data.refresh_token)


@protected_router.post(
    "/logout-all",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(401),
)
async def logout_all(session: SessionDep, user: CurrentUser) -> None:
    """Sign out everywhere: every access and refresh token issued so far stops working."""
    await service.revoke_all_sessions(session, user=user)


async def recipient_allowed(limiter: RateLimiterDep, data: EmailRequest) -> bool:
    """Whether the address may be sent another account email now (RATE_LIMIT_EMAILS_PER_
    RECIPIENT). Never a 429: that would tell the client something about the address."""
    return await limiter.allows("email_recipient", recipient_key(data.email))


RecipientAllowed = Annotated[bool, Depends(recipient_allowed)]


@router.post(
    "/password-reset",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EmailRequestAccepted,
    responses=problem_responses(422),
    dependencies=[Depends(limit_email_requests)],
)
async def request_password_reset(
    session: SessionDep, data: EmailRequest, allowed: RecipientAllowed
) -> EmailRequestAccepted:
    """Mail a single-use password-reset token to the account with this address, if one has
    it. The answer is the same, and takes about as long, whether or not one does."""
    if allowed:
        await service.request_password_reset(session, email=data.email)
    return EmailRequestAccepted()


@router.post(
    "/password-reset/confirm",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(400, 422),
)
async def confirm_password_reset(
    session: SessionDep, passwords: PasswordsDep, data: PasswordResetConfirm
) -> None:
    """Set a new password with the emailed token: the token is spent, and every login of
    the account ends. 400 `invalid_reset_token` for a token that is forged, expired or used."""
    await service.reset_password(
        session, passwords=passwords, token=data.token, new_password=data.new_password
    )


@router.post(
    "/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    response_model=None,
    responses=problem_responses(400, 422),
)
async def verify_email(session: SessionDep, data: EmailVerification) -> None:
    """Confirm the account's address with the emailed token (400 `invalid_verification_token`
    for a token that is forged, expired or used). The first time, a welcome email follows."""
    await service.verify_email(session, token=data.token)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=EmailRequestAccepted,
    responses=problem_responses(422),
    dependencies=[Depends(limit_email_requests)],
)
async def resend_verification_email(
    session: SessionDep, data: EmailRequest, allowed: RecipientAllowed
) -> EmailRequestAccepted:
    """Mail a new verification token to the account with this address, if it has one that is
    not verified yet. The same answer either way."""
    if allowed:
        await service.request_verification_email(session, email=data.email)
    return EmailRequestAccepted()

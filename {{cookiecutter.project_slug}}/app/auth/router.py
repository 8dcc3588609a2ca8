"""Auth routes. `router` is public: registration, login, token refresh and logout.
`protected_router` needs a signed-in user (app/api.py mounts it on the protected router)."""

from fastapi import APIRouter, Depends, Response, status

from app.auth import service
from app.auth.dependencies import CurrentUser, PasswordsDep, TokensDep
from app.auth.schemas import LoginFormDep, RefreshRequest, TokenPair
from app.core.errors import problem_responses
from app.core.ratelimit import limit_login, limit_login_failures, limit_register
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
    """Create an account. The email is unique, whatever its case. A welcome email follows
    (a background job, stored with the account)."""
    user = await service.register(session, passwords=passwords, data=data)
    return UserRead.model_validate(user)


@router.post(
    "/login",
    response_model=TokenPair,
    responses=problem_responses(400, 401, 422),
    dependencies=[
        Depends(limit_login),
        Depends(limit_login_failures, scope="function"),
        Depends(no_store),
    ],
)
async def login(
    session: SessionDep, passwords: PasswordsDep, tokens: TokensDep, form: LoginFormDep
) -> TokenPair:
    """Exchange email (`username`) and password for an access and a refresh token."""
    user = await service.authenticate(
        session, passwords=passwords, email=form.username, password=form.password
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

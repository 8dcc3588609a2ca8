"""The authentication chain: bearer token -> claims -> principal -> current user or admin;
and the app's token and password objects (built by create_app from its settings, kept on
app.state)."""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.exceptions import AdminRequired, InvalidToken
from app.core.config import Settings
from app.core.security import AccessClaims, InvalidTokenError, Passwords, Tokens
from app.db.session import SessionDep, SessionmakerDep
from app.users import service as users_service
from app.users.models import Principal, User

# auto_error=False: a missing token is our own problem+json 401, not FastAPI's default body.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)

MAX_TOKEN_LENGTH = 4096


async def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with (create_app), not the environment's of now."""
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
TokensDep = Annotated[Tokens, Depends(get_tokens)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]


async def get_token_claims(
    request: Request, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> AccessClaims:
    """The verified claims of the bearer token. (The app's Tokens come from the request, not
    from TokensDep: this runs on every protected request, and each dependency costs a little.)"""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken
    tokens: Tokens = request.app.state.tokens
    try:
        return tokens.decode_access_token(token)
    except InvalidTokenError as exc:
        raise InvalidToken from exc


TokenClaims = Annotated[AccessClaims, Depends(get_token_claims)]

DependencyT = TypeVar("DependencyT", bound=Callable[..., Any])

# The dependencies whose own query is the account check (see `checks_account`).
ACCOUNT_CHECKS: set[Callable[..., Any]] = set()


def checks_account(dependency: DependencyT) -> DependencyT:
    """Mark a dependency whose query checks the account as `get_principal` does.

    A router whose every route depends on one of these is included without the separate check
    (`include_checked_by_route` in app/api.py, which refuses a route that has none), so those
    requests check the account and load what they need in one round trip. Use it only for a
    query that includes `VALID_ACCOUNT` (app/users/service.py) and raises InvalidToken when the
    account does not match.
    """
    ACCOUNT_CHECKS.add(dependency)
    return dependency


@checks_account
async def get_principal(session: SessionDep, claims: TokenClaims) -> Principal:
    """The token's user, if it still exists, is active and the token is not outdated.

    Checked on every protected request (the protected router depends on it), so that a
    deactivation, a password change or a logout-all refuses the very next request.
    """
    principal = await users_service.get_principal(
        session, user_id=claims.user_id, token_version=claims.token_version
    )
    if principal is None:
        raise InvalidToken
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def _checked_account(session: AsyncSession, claims: AccessClaims) -> User:
    user = await users_service.get_account(
        session, user_id=claims.user_id, token_version=claims.token_version
    )
    if user is None:
        raise InvalidToken
    return user


@checks_account
async def get_current_user(session: SessionDep, claims: TokenClaims) -> User:
    """The caller's whole account, for the routes that show or change it, loaded by the query
    that checks it."""
    return await _checked_account(session, claims)


CurrentUser = Annotated[User, Depends(get_current_user)]


@checks_account
async def get_current_user_to_read(factory: SessionmakerDep, claims: TokenClaims) -> User:
    """`get_current_user` for a route that only reads: its session lives just for the query.

    A dependency that yields (`SessionDep`) is entered and left around the whole request, on
    every request; a read needs the session for one query, so it opens and closes it here, and
    the connection goes back to the pool before the response is written.
    """
    async with factory() as session:
        return await _checked_account(session, claims)


CurrentUserToRead = Annotated[User, Depends(get_current_user_to_read)]


async def get_admin(principal: CurrentPrincipal) -> Principal:
    if not principal.is_admin:
        raise AdminRequired
    return principal


Admin = Annotated[Principal, Depends(get_admin)]

"""The authentication chain: bearer token -> claims -> current user -> admin; and the app's
token and password objects (built by create_app from its settings, kept on app.state)."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.auth.exceptions import AdminRequired, InvalidToken
from app.core.security import AccessClaims, InvalidTokenError, Passwords, Tokens
from app.db.session import SessionDep
from app.users.models import User

# auto_error=False: a missing token is our own problem+json 401, not FastAPI's default body.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)

MAX_TOKEN_LENGTH = 4096


async def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


TokensDep = Annotated[Tokens, Depends(get_tokens)]
PasswordsDep = Annotated[Passwords, Depends(get_passwords)]


async def get_token_claims(
    tokens: TokensDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> AccessClaims:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken
    try:
        return tokens.decode_access_token(token)
    except InvalidTokenError as exc:
        raise InvalidToken from exc


TokenClaims = Annotated[AccessClaims, Depends(get_token_claims)]


async def get_current_user(session: SessionDep, claims: TokenClaims) -> User:
    """The token's user, if it still exists, is active and the token is not outdated."""
    user = await session.get(User, claims.user_id)
    if user is None or not user.is_active or user.token_version != claims.token_version:
        raise InvalidToken
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise AdminRequired
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]

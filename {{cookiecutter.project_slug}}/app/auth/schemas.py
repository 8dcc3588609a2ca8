from typing import Annotated, Literal

from fastapi import Form
from pydantic import StringConstraints

from app.core.schemas import ReadSchema, Schema, SingleLine
from app.users.models import EMAIL_MAX_LENGTH
from app.users.schemas import PASSWORD_MAX_LENGTH, Email, Password, PasswordBytes

RefreshTokenStr = Annotated[str, StringConstraints(min_length=1, max_length=256)]
# A password-reset or verification token (43 characters as issued; longer is never one).
AccountTokenStr = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class LoginForm(Schema):
    """The OAuth2 password form (`username` is the email), with bounded fields."""

    username: Annotated[
        str, StringConstraints(min_length=1, max_length=EMAIL_MAX_LENGTH), SingleLine
    ]
    password: Annotated[
        str, StringConstraints(min_length=1, max_length=PASSWORD_MAX_LENGTH), PasswordBytes
    ]
    grant_type: Literal["password"] | None = None
    scope: Annotated[str, StringConstraints(max_length=256)] = ""
    client_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    client_secret: Annotated[str, StringConstraints(max_length=256)] | None = None


LoginFormDep = Annotated[LoginForm, Form()]


class TokenPair(ReadSchema):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class RefreshRequest(Schema):
    refresh_token: RefreshTokenStr


class EmailRequest(Schema):
    """Ask for a password-reset or a verification email to be sent to this address."""

    email: Email


class EmailRequestAccepted(ReadSchema):
    """The same answer whether or not an account has the address."""

    detail: str = (
        "If an account can receive this email, it is on its way. It may take a few minutes."
    )


class PasswordResetConfirm(Schema):
    token: AccountTokenStr
    new_password: Password


class EmailVerification(Schema):
    token: AccountTokenStr

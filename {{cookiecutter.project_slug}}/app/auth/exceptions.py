from app.core.errors import PermissionDenied, Unauthorized


class InvalidCredentials(Unauthorized):
    code = "invalid_credentials"
    message = "Incorrect email or password."


class InvalidToken(Unauthorized):
    code = "invalid_token"
    message = "The access token is missing, invalid or expired."


class InvalidRefreshToken(Unauthorized):
    code = "invalid_refresh_token"
    message = "The refresh token is invalid, expired or revoked."


class RefreshTokenReused(InvalidRefreshToken):
    """A rotated token came back: it may be stolen, so its whole family is revoked."""

    keep_changes = True


class AdminRequired(PermissionDenied):
    code = "admin_required"
    message = "This requires an admin account."

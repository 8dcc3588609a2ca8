from app.core.errors import AppError, PermissionDenied, Unauthorized


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


class EmailNotVerified(PermissionDenied):
    """Only someone with the right password learns this (REQUIRE_VERIFIED_EMAIL)."""

    code = "email_not_verified"
    message = "Verify your email address first: follow the link in the verification email."


class InvalidResetToken(AppError):
    code = "invalid_reset_token"
    message = "The password-reset token is invalid, expired or already used; request a new one."


class InvalidVerificationToken(AppError):
    code = "invalid_verification_token"
    message = "The verification token is invalid, expired or already used; request a new one."

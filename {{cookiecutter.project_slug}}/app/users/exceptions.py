from app.core.errors import Conflict, NotFound, PermissionDenied


class UserNotFound(NotFound):
    code = "user_not_found"
    message = "The user does not exist."


class EmailAlreadyRegistered(Conflict):
    code = "email_already_registered"
    message = "An account with this email already exists."


class WrongCurrentPassword(PermissionDenied):
    code = "wrong_current_password"
    message = "The current password is not correct."


class AccountChanged(Conflict):
    code = "account_changed"
    message = "The account changed while this request was being handled; try again."


class LastAdmin(Conflict):
    code = "last_admin"
    message = "The last active admin cannot be demoted, deactivated or deleted."

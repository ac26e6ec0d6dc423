"""What can go wrong with accounts and tokens, as the client is told it."""

from __future__ import annotations

from app.core.errors import ConflictError, UnauthorizedError


class EmailAlreadyRegisteredError(ConflictError):
    detail = "An account with this email already exists"


class InvalidCredentialsError(UnauthorizedError):
    detail = "Incorrect email or password"


class InvalidRefreshTokenError(UnauthorizedError):
    detail = "Invalid or expired refresh token"


class UnknownUserError(LookupError):
    """No account has this id (it was deleted while something still held the id)."""

    def __init__(self) -> None:
        super().__init__("no such user")

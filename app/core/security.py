"""Password hashing and access tokens.

Passwords: bcrypt over a SHA-256 pre-hash. bcrypt reads at most 72 bytes and
bcrypt>=5 rejects longer input, so the pre-hash lets long passphrases count in
full. Access tokens: short-lived HS256 JWTs naming the user and the login
session they belong to, so revoking a session also voids its access tokens.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt

JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode()).digest())


def hash_password(password: str, *, rounds: int) -> str:
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode()


def verify_password(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(_prehash(password), password_hash.encode())


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are random, so a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: datetime


class InvalidAccessTokenError(Exception):
    """The token is malformed, tampered with, of the wrong type or expired."""

    def __init__(self, *, expired: bool = False) -> None:
        super().__init__("token expired" if expired else "invalid token")
        self.expired = expired


def issue_access_token(
    *, user_id: uuid.UUID, session_id: uuid.UUID, secret: str, ttl_s: int
) -> tuple[str, datetime]:
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=ttl_s)
    claims = {
        "sub": str(user_id),
        "sid": str(session_id),
        "type": ACCESS_TOKEN_TYPE,
        "iat": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires_at


def decode_access_token(token: str, *, secret: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "iat", "sub", "sid"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidAccessTokenError(expired=True) from exc
    except jwt.InvalidTokenError as exc:
        raise InvalidAccessTokenError() from exc
    if claims.get("type") != ACCESS_TOKEN_TYPE:
        raise InvalidAccessTokenError()
    try:
        return AccessClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (ValueError, TypeError) as exc:
        raise InvalidAccessTokenError() from exc

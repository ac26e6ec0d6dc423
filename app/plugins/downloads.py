"""Signed, expiring download links for approved packages, served by this server.

A link carries a JWT (HS256) naming the user and the plugin version, valid for
`DOWNLOAD_TTL`. It is signed with a key derived from JWT_SECRET for this one
purpose, so a download token is never an access token and the reverse. A link
whose signature does not match (tampered, or another server's) is 403; one
whose time is up is 410, so the desktop knows to install again for a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from app.plugins.exceptions import DownloadLinkExpiredError, DownloadLinkInvalidError

DOWNLOAD_TTL = timedelta(minutes=15)
_ALGORITHM = "HS256"
_TYPE = "plugin_download"
_PURPOSE = b"adiuva plugin download links"


@dataclass(frozen=True, slots=True)
class DownloadGrant:
    user_id: uuid.UUID
    version_id: uuid.UUID


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE, hashlib.sha256).digest()


def sign_download(
    *, secret: str, user_id: uuid.UUID, version_id: uuid.UUID, now: datetime
) -> tuple[str, datetime]:
    """A token for the user to fetch the version's package until the returned time."""
    expires_at = now + DOWNLOAD_TTL
    claims = {
        "sub": str(user_id),
        "ver": str(version_id),
        "typ": _TYPE,
        "iat": now,
        "exp": expires_at,
    }
    return jwt.encode(claims, _key(secret), algorithm=_ALGORITHM), expires_at


def verify_download(token: str, *, secret: str) -> DownloadGrant:
    """Who may fetch which version; 403 for a token not signed here, 410 once expired."""
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[_ALGORITHM],
            options={"require": ["exp", "sub", "ver", "typ"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise DownloadLinkExpiredError from exc
    except jwt.InvalidTokenError as exc:
        raise DownloadLinkInvalidError from exc
    if claims.get("typ") != _TYPE:
        raise DownloadLinkInvalidError
    try:
        return DownloadGrant(user_id=uuid.UUID(claims["sub"]), version_id=uuid.UUID(claims["ver"]))
    except (ValueError, TypeError) as exc:
        raise DownloadLinkInvalidError from exc

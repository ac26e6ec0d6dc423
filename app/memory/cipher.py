"""One user's data key, unwrapped for a request: every memory tier is encrypted with it."""

from __future__ import annotations

import hashlib
import hmac
import uuid

from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.core.keys import MasterKeyring


class UserCipher:
    """Encrypts and decrypts one user's text; `digest` gives equality lookups without it.

    The digest is an HMAC under the user's own key, so equal texts can be found
    (a core key, a request's intent) without storing the text in the clear.
    """

    def __init__(self, data_key: bytes) -> None:
        self._fernet = Fernet(data_key)
        self._mac_key = data_key

    @classmethod
    async def for_user(
        cls, *, session: AsyncSession, keyring: MasterKeyring, user_id: uuid.UUID
    ) -> UserCipher:
        return cls(await auth_service.data_key(session=session, keyring=keyring, user_id=user_id))

    def encrypt(self, text: str) -> bytes:
        return self._fernet.encrypt(text.encode())

    def decrypt(self, token: bytes) -> str:
        return self._fernet.decrypt(token).decode()

    def digest(self, text: str) -> str:
        return hmac.new(self._mac_key, text.encode(), hashlib.sha256).hexdigest()

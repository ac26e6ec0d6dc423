"""Envelope encryption: per-user data keys wrapped by the server's master key.

Each user gets a Fernet data key at registration. Only its wrapped form (the
data key encrypted with the master key) is stored. Retired master keys stay
usable for unwrapping through MultiFernet until `rotate-master-key` re-wraps
every data key with the current one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.core.settings import ResolvedSettings


class KeyUnavailableError(RuntimeError):
    """A wrapped data key cannot be opened with any configured master key."""


class MasterKeyring:
    """The current master key plus retired ones, newest first."""

    def __init__(self, current: str, retired: list[str] | None = None) -> None:
        self._current = Fernet(current)
        self._all = MultiFernet([self._current, *(Fernet(key) for key in retired or [])])

    @classmethod
    def from_settings(cls, settings: ResolvedSettings) -> MasterKeyring:
        """ENCRYPTION_KEY as the current master key, ENCRYPTION_OLD_KEYS as the retired ones."""
        return cls(
            settings.encryption_key.get_secret_value(),
            [key.get_secret_value() for key in settings.encryption_old_keys],
        )

    @property
    def all_keys(self) -> MultiFernet:
        """Encrypts with the current master key, decrypts with any configured one."""
        return self._all

    def new_wrapped_data_key(self) -> bytes:
        """A fresh data key, already wrapped by the current master key."""
        return self._current.encrypt(Fernet.generate_key())

    def data_key(self, wrapped: bytes) -> Fernet:
        """Unwrap a stored data key into a cipher for that user's data."""
        return Fernet(self.raw_data_key(wrapped))

    def raw_data_key(self, wrapped: bytes) -> bytes:
        """The unwrapped key bytes, for deriving lookup digests (never store them)."""
        with _opening():
            return self._all.decrypt(wrapped)

    def rewrap(self, wrapped: bytes) -> bytes:
        """The same data key, wrapped by the current master key."""
        with _opening():
            return self._all.rotate(wrapped)


@contextmanager
def _opening() -> Iterator[None]:
    try:
        yield
    except InvalidToken as exc:
        msg = "no configured master key opens this data key"
        raise KeyUnavailableError(msg) from exc

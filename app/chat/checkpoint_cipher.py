"""Encryption of LangGraph checkpoints (the conversation threads) at rest.

Threads hold what the user said, so they are encrypted like everything else
the server keeps: with the master keyring (MultiFernet), so a database dump
shows no conversation text and retired master keys still read older
checkpoints. The serializer marks encrypted values, so checkpoints written
before encryption was enabled still load.
"""

from __future__ import annotations

from cryptography.fernet import MultiFernet
from langgraph.checkpoint.serde.base import CipherProtocol
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

CIPHER_NAME = "fernet"


class FernetCipher(CipherProtocol):
    def __init__(self, keys: MultiFernet) -> None:
        self._keys = keys

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        return CIPHER_NAME, self._keys.encrypt(plaintext)

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        if ciphername != CIPHER_NAME:
            msg = f"unsupported checkpoint cipher {ciphername!r}"
            raise ValueError(msg)
        return self._keys.decrypt(ciphertext)


def encrypted_serializer(keys: MultiFernet) -> EncryptedSerializer:
    return EncryptedSerializer(FernetCipher(keys))


_ENCRYPTED_TABLES = ("checkpoint_blobs", "checkpoint_writes")


async def reencrypt_checkpoints(conn: AsyncConnection, keys: MultiFernet) -> int:
    """Re-encrypt every stored checkpoint value with the current master key.

    Part of master-key rotation: afterwards the retired key can be dropped
    without losing conversation threads. Returns how many values moved.
    """
    moved = 0
    for table in _ENCRYPTED_TABLES:
        exists = await conn.scalar(text("SELECT to_regclass(:table)"), {"table": table})
        if exists is None:  # no chat has run on this database yet
            continue
        rows = await conn.execute(
            text(f"SELECT ctid, blob FROM {table} WHERE type LIKE :suffix"),  # noqa: S608 - constant names
            {"suffix": f"%+{CIPHER_NAME}"},
        )
        for ctid, blob in rows.all():
            await conn.execute(
                text(f"UPDATE {table} SET blob = :blob WHERE ctid = :ctid"),  # noqa: S608
                {"blob": keys.rotate(bytes(blob)), "ctid": ctid},
            )
            moved += 1
    return moved

"""Request and response bodies of the storage endpoints.

Blobs travel as standard base64 (RFC 4648 §4, padded) in JSON; backups as raw
bytes. Every check a valid-looking request can still fail (a checksum that
does not match, vectors of another dimension) is the service's, after the
plan is checked, so the OpenAPI document describes exactly what is parsed here.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

from app.storage.integrity import SHA256_HEX_PATTERN

KIB = 1024
MIB = 1024 * KIB

# What one encrypted record or vector item may weigh, decoded.
RECORD_MAX_BYTES = MIB
VECTOR_ITEM_MAX_BYTES = 64 * KIB
MAX_VECTORS_PER_UPSERT = 500
MAX_IDS_PER_DELETE = 1000
# pgvector's limit for a stored vector.
MAX_VECTOR_DIMENSIONS = 16_000
MAX_TOP_K = 100
MAX_RECORDS_PER_PAGE = 500

# Standard base64, padded, at least one byte.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
TABLE_PATTERN = r"^[A-Za-z][A-Za-z0-9_]{0,63}$"
ITEM_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
BACKUP_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
BACKUP_TIMESTAMP_PATTERN = r"^[0-9]{1,15}$"


def base64_length(size: int) -> int:
    """Characters of the padded base64 of `size` bytes."""
    return (size + 2) // 3 * 4


def _decoder(max_bytes: int) -> Callable[[object], bytes]:
    """Parses base64 text into at most `max_bytes` bytes (at least one)."""

    def decode(value: object) -> bytes:
        if isinstance(value, bytes):  # built in Python, already bytes
            data = value
        elif isinstance(value, str):
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                msg = "must be standard base64 (A-Z, a-z, 0-9, + and /, padded with =)"
                raise ValueError(msg) from None
        else:
            msg = "must be a base64 string"
            raise ValueError(msg)
        if not data:
            msg = "must hold at least one byte"
            raise ValueError(msg)
        if len(data) > max_bytes:
            msg = f"must hold at most {max_bytes} bytes once decoded"
            raise ValueError(msg)
        return data

    return decode


def _blob_schema(max_bytes: int) -> dict[str, Any]:
    return {
        "type": "string",
        "contentEncoding": "base64",
        "pattern": BASE64_PATTERN,
        "minLength": 4,
        "maxLength": base64_length(max_bytes),
        "description": f"The encrypted bytes as standard base64; at most {max_bytes:,} bytes.",
    }


RecordBlob = Annotated[
    bytes,
    PlainValidator(_decoder(RECORD_MAX_BYTES)),
    WithJsonSchema(_blob_schema(RECORD_MAX_BYTES)),
]
VectorBlob = Annotated[
    bytes,
    PlainValidator(_decoder(VECTOR_ITEM_MAX_BYTES)),
    WithJsonSchema(_blob_schema(VECTOR_ITEM_MAX_BYTES)),
]
Checksum = Annotated[
    str,
    Field(
        pattern=SHA256_HEX_PATTERN,
        description="SHA-256 of the decoded bytes, 64 hex digits.",
    ),
    AfterValidator(str.lower),
]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Vector = Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_VECTOR_DIMENSIONS)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _not_null(value: object) -> object:
    """Optional fields are left out, not null (their schema does not allow null)."""
    if value is None:
        msg = "must not be null; leave the field out instead"
        raise ValueError(msg)
    return value


# -- records -------------------------------------------------------------------------------


class RecordCreate(_Body):
    table: str = Field(pattern=TABLE_PATTERN, description="The desktop table the row is from.")
    blob: RecordBlob
    checksum: Checksum


class RecordUpdate(_Body):
    blob: RecordBlob
    checksum: Checksum


class RecordCreated(BaseModel):
    id: uuid.UUID
    created_at: datetime


class RecordRead(BaseModel):
    id: uuid.UUID
    table: str
    checksum: str
    size_bytes: int
    created_at: datetime
    updated_at: datetime


# -- vectors -------------------------------------------------------------------------------


class VectorItemUpsert(_Body):
    id: str = Field(pattern=ITEM_ID_PATTERN, description="The desktop's id for the item.")
    blob: VectorBlob
    checksum: Checksum
    vector: Vector | SkipJsonSchema[None] = Field(
        default=None,
        description="An embedding the desktop chooses to share, searched by cosine. All "
        "of a user's vectors have one dimension. Without it, the item gets a vector "
        "derived from its blob's SHA-256, which only `query_blob` finds, and only for "
        "an identical blob.",
    )

    _present = field_validator("vector", mode="before")(_not_null)


class VectorsUpsert(_Body):
    vectors: list[VectorItemUpsert] = Field(min_length=1, max_length=MAX_VECTORS_PER_UPSERT)


class VectorsUpserted(BaseModel):
    upserted: int


class VectorSearch(_Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["query_vector"]}, {"required": ["query_blob"]}],
        },
    )

    query_vector: Vector | SkipJsonSchema[None] = Field(
        default=None, description="Find the items whose shared vectors are nearest (cosine)."
    )
    query_blob: VectorBlob | SkipJsonSchema[None] = Field(
        default=None,
        description="Find the items stored without a vector whose blob is identical "
        "(exact duplicates only).",
    )
    top_k: int = Field(default=10, ge=1, le=MAX_TOP_K)

    _present = field_validator("query_vector", "query_blob", mode="before")(_not_null)

    @model_validator(mode="after")
    def _one_query(self) -> VectorSearch:
        if (self.query_vector is None) == (self.query_blob is None):
            msg = "give exactly one of query_vector and query_blob"
            raise ValueError(msg)
        return self


class SearchHit(BaseModel):
    id: str
    score: float = Field(description="Cosine similarity, 1 for the same direction.")
    blob: str = Field(description="The item's encrypted bytes as base64.")


class SearchResults(BaseModel):
    results: list[SearchHit]


class VectorsDelete(_Body):
    ids: list[Annotated[str, Field(pattern=ITEM_ID_PATTERN)]] = Field(
        min_length=1, max_length=MAX_IDS_PER_DELETE
    )


# -- backups and the rest ------------------------------------------------------------------


class BackupStored(BaseModel):
    ok: Literal[True] = True
    id: uuid.UUID


class BackupRead(BaseModel):
    id: uuid.UUID
    version: str
    timestamp: int = Field(description="The desktop's time of the snapshot, Unix ms.")
    checksum: str
    size_bytes: int
    created_at: datetime


class Ok(BaseModel):
    ok: Literal[True] = True


class StorageUsage(BaseModel):
    used_bytes: int = Field(description="Records, vector items and backups together.")
    quota_bytes: int | None = Field(description="The plan's quota; null: unlimited.")

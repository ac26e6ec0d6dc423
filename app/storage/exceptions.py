"""What cloud storage refuses, as the client is told it (mapped to HTTP by `app.core.errors`).

AppError
├── ChecksumMismatchError (400)     the bytes are not what the checksum says
├── EmptyBlobError (400)           nothing to store
├── RepeatedHeaderError (400)      a backup header sent twice: which value is meant?
├── QuotaExceededError (403)       the write would pass the plan's quota
├── ReadOnlyStorageError (403)     over quota after a downgrade: read and delete only
├── BlobNotFoundError (404)        no such id among the user's own
├── VectorDimensionError (422)     a vector of another dimension than the user's
└── StorageUnavailableError (503)  the blob store (S3, the disk) failed or is away
"""

from __future__ import annotations

from app.core.errors import AppError, ForbiddenError, NotFoundError, ServiceUnavailableError

# How long a client should wait before retrying a write the blob store failed.
STORAGE_RETRY_AFTER_S = 5


class ChecksumMismatchError(AppError):
    status_code = 400
    detail = "Checksum mismatch: the SHA-256 of the bytes received is not the checksum sent"


class EmptyBlobError(AppError):
    status_code = 400
    detail = "The body is empty; an encrypted blob never is"


class RepeatedHeaderError(AppError):
    """A single-value header sent twice: a proxy may join the values or keep either one,
    so which the client meant cannot be told."""

    status_code = 400
    detail = "A header was sent more than once"


class UploadInterruptedError(AppError):
    """The client left (or was cut off at the body limit) before the body ended."""

    status_code = 400
    detail = "The upload ended before its body did; nothing was stored"


class QuotaExceededError(ForbiddenError):
    detail = "Storage quota exceeded"


class ReadOnlyStorageError(QuotaExceededError):
    detail = "Storage is read-only: you are over your plan's quota"


class BlobNotFoundError(NotFoundError):
    detail = "Not found"


class InvalidVectorsError(AppError):
    status_code = 422
    detail = "These vectors cannot be stored"


class VectorDimensionError(InvalidVectorsError):
    detail = "Vector dimension mismatch"


class StorageUnavailableError(ServiceUnavailableError):
    detail = "Storage is unavailable; nothing was stored, try again shortly"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=STORAGE_RETRY_AFTER_S)

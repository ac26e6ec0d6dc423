"""Cloud storage over HTTP: records, vectors, backups and usage (SPEC §9).

Every route is the signed-in user's own: another user's id is 404, as is an id
that never existed. Writes need a plan with cloud storage (free: 403 naming the
plan) and room in its quota; reads and deletes work on any plan, so data kept
after a downgrade stays readable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from app.auth.dependencies import CurrentUser
from app.core.dependencies import SessionDep, SettingsDep
from app.core.responses import (
    AUTHENTICATED,
    EVERY_ROUTE,
    JSON_BODY,
    Responses,
    UnprocessableDetail,
    error,
)
from app.storage import backups, quota, records, vectors
from app.storage.dependencies import BlobStoreDep
from app.storage.exceptions import RepeatedHeaderError, UploadInterruptedError
from app.storage.integrity import SHA256_HEX_PATTERN
from app.storage.models import Backup, StoredRecord
from app.storage.schemas import (
    BACKUP_TIMESTAMP_PATTERN,
    BACKUP_VERSION_PATTERN,
    MAX_RECORDS_PER_PAGE,
    TABLE_PATTERN,
    BackupRead,
    BackupStored,
    Ok,
    RecordCreate,
    RecordCreated,
    RecordRead,
    RecordUpdate,
    SearchResults,
    StorageUsage,
    VectorsDelete,
    VectorSearch,
    VectorsUpsert,
    VectorsUpserted,
)
from app.tiers.matrix import limits_for

router = APIRouter(tags=["storage"], responses={**EVERY_ROUTE, **AUTHENTICATED})

OCTET_STREAM = "application/octet-stream"
_BINARY = {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}
_MAX_PAGE = 1_000_000

# What a write can be refused for, beyond the shared answers.
_WRITE_REFUSALS = {
    **error(
        403,
        "The plan has no cloud storage (the detail names it), the write would pass its "
        "quota, or the user is over the quota (read-only after a downgrade).",
    ),
    **error(503, "The blob store (S3 or the disk) is unavailable; nothing was stored."),
}
_CHECKED_WRITE = {
    **JSON_BODY,
    **_WRITE_REFUSALS,
    **error(400, "The checksum is not the SHA-256 of the blob; nothing was stored."),
}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


_ETAG = _header("The SHA-256 of the bytes, quoted.")
_NOT_MODIFIED: Responses = {
    304: {"description": "`If-None-Match` names these bytes: not sent again."}
}


def _etag(checksum: str) -> str:
    return f'"{checksum}"'


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` (RFC 9110 §13.1.2, weak comparison) names `etag`."""
    if if_none_match is None:
        return False
    tags = [tag.strip() for tag in if_none_match.split(",")]
    return "*" in tags or any(tag.removeprefix("W/") == etag for tag in tags)


# -- records -------------------------------------------------------------------------------


def _record_read(record: StoredRecord) -> RecordRead:
    return RecordRead(
        id=record.id,
        table=record.table_name,
        checksum=record.checksum,
        size_bytes=record.size_bytes,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _record_headers(record: StoredRecord) -> dict[str, str]:
    return {"X-Checksum": record.checksum, "ETag": _etag(record.checksum)}


@router.post("/storage/records", status_code=status.HTTP_201_CREATED, responses=_CHECKED_WRITE)
async def create_record(
    body: RecordCreate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobStoreDep,
) -> RecordCreated:
    """Store one encrypted row of a desktop table."""
    record = await records.create_record(
        session=session,
        blobs=blobs,
        settings=settings,
        user=user,
        table=body.table,
        blob=body.blob,
        checksum=body.checksum,
    )
    return RecordCreated(id=record.id, created_at=record.created_at)


@router.get("/storage/records")
async def list_records(
    user: CurrentUser,
    session: SessionDep,
    table: Annotated[str | None, Query(pattern=TABLE_PATTERN)] = None,
    page: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS_PER_PAGE)] = 100,
) -> list[RecordRead]:
    """The user's records, metadata only, oldest first."""
    rows = await records.list_records(
        session=session, user_id=user.id, table=table, page=page, limit=limit
    )
    return [_record_read(row) for row in rows]


@router.get(
    "/storage/records/{record_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The record's encrypted bytes, as uploaded.",
            "content": _BINARY,
            "headers": {"X-Checksum": _header("SHA-256 of the bytes, hex."), "ETag": _ETAG},
        },
        **_NOT_MODIFIED,
        **error(404, "No such record of the user's."),
    },
)
async def read_record(
    record_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobStoreDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The record's bytes, with their checksum."""
    record = await records.get_record(session=session, user_id=user.id, record_id=record_id)
    if _not_modified(if_none_match, _etag(record.checksum)):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=_record_headers(record))
    record, data = await records.read_record(session=session, blobs=blobs, record=record)
    return Response(data, media_type=OCTET_STREAM, headers=_record_headers(record))


@router.put(
    "/storage/records/{record_id}",
    responses={**_CHECKED_WRITE, **error(404, "No such record of the user's.")},
)
async def replace_record(
    record_id: uuid.UUID,
    body: RecordUpdate,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobStoreDep,
) -> RecordRead:
    """Replace the record's bytes."""
    record = await records.replace_record(
        session=session,
        blobs=blobs,
        settings=settings,
        user=user,
        record_id=record_id,
        blob=body.blob,
        checksum=body.checksum,
    )
    return _record_read(record)


@router.delete(
    "/storage/records/{record_id}", responses=error(404, "No such record of the user's.")
)
async def delete_record(
    record_id: uuid.UUID, user: CurrentUser, session: SessionDep, blobs: BlobStoreDep
) -> Ok:
    """Delete the record and its bytes."""
    await records.delete_record(session=session, blobs=blobs, user_id=user.id, record_id=record_id)
    return Ok()


# -- vectors -------------------------------------------------------------------------------


@router.post(
    "/storage/vectors/upsert",
    responses={
        **_CHECKED_WRITE,
        **error(
            422,
            "Invalid, or not storable: a vector of another dimension than the user's "
            "vectors, a zero vector, an id given twice.",
            model=UnprocessableDetail,
        ),
    },
)
async def upsert_vectors(
    body: VectorsUpsert,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobStoreDep,
) -> VectorsUpserted:
    """Insert or replace encrypted items and their vectors, all or none."""
    upserted = await vectors.upsert_vectors(
        session=session, blobs=blobs, settings=settings, user=user, items=body.vectors
    )
    return VectorsUpserted(upserted=upserted)


@router.post(
    "/storage/vectors/search",
    responses={
        **JSON_BODY,
        **error(
            422,
            "Invalid, or a query vector of another dimension than the user's.",
            model=UnprocessableDetail,
        ),
        **error(503, "The blob store (S3 or the disk) is unavailable."),
    },
)
async def search_vectors(
    body: VectorSearch, user: CurrentUser, session: SessionDep, blobs: BlobStoreDep
) -> SearchResults:
    """The user's items nearest `query_vector` (cosine), or identical to `query_blob`."""
    hits = await vectors.search(
        session=session,
        blobs=blobs,
        user_id=user.id,
        query_vector=body.query_vector,
        query_blob=body.query_blob,
        top_k=body.top_k,
    )
    return SearchResults(results=hits)


@router.delete("/storage/vectors", responses=JSON_BODY)
async def delete_vectors(
    body: VectorsDelete, user: CurrentUser, session: SessionDep, blobs: BlobStoreDep
) -> Ok:
    """Delete the user's items with these ids; unknown ids are ignored."""
    await vectors.delete_vectors(session=session, blobs=blobs, user_id=user.id, ids=body.ids)
    return Ok()


# -- usage ---------------------------------------------------------------------------------


@router.get("/storage/usage")
async def usage(user: CurrentUser, session: SessionDep, settings: SettingsDep) -> StorageUsage:
    """Bytes stored (records, vectors and backups together) and the plan's quota."""
    return StorageUsage(
        used_bytes=await quota.used_bytes(session=session, user_id=user.id),
        quota_bytes=limits_for(user.tier, settings=settings).storage_bytes,
    )


# -- backups -------------------------------------------------------------------------------


def _backup_headers(backup: Backup) -> dict[str, str]:
    return {
        "X-Backup-Version": backup.version,
        "X-Backup-Timestamp": str(backup.timestamp_ms),
        "X-Backup-Checksum": backup.checksum,
        "ETag": _etag(backup.checksum),
    }


async def _request_body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise UploadInterruptedError from None


_BACKUP_HEADERS = ("X-Backup-Version", "X-Backup-Timestamp", "X-Backup-Checksum")


def _declared_size(request: Request) -> int | None:
    value = request.headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


@router.put(
    "/backup",
    openapi_extra={"requestBody": {"required": True, "content": _BINARY}},
    responses={
        **_WRITE_REFUSALS,
        **error(
            400,
            "The body's SHA-256 is not X-Backup-Checksum, the body is empty, the upload "
            "was cut short, or an X-Backup-* header was sent twice; nothing was stored.",
        ),
        **error(413, "The body is larger than BACKUP_MAX_BYTES; nothing was stored."),
    },
)
async def store_backup(
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobStoreDep,
    version: Annotated[
        str,
        Header(
            alias="X-Backup-Version",
            pattern=BACKUP_VERSION_PATTERN,
            description="The desktop's backup format version.",
        ),
    ],
    timestamp: Annotated[
        str,
        Header(
            alias="X-Backup-Timestamp",
            pattern=BACKUP_TIMESTAMP_PATTERN,
            description="When the desktop took the snapshot, Unix milliseconds.",
        ),
    ],
    checksum: Annotated[
        str,
        Header(
            alias="X-Backup-Checksum",
            pattern=SHA256_HEX_PATTERN,
            description="SHA-256 of the body, 64 hex digits; checked while it streams.",
        ),
    ],
) -> BackupStored:
    """Store a backup: the raw encrypted body, streamed; the newest BACKUP_KEEP are kept."""
    for name in _BACKUP_HEADERS:
        if len(request.headers.getlist(name)) > 1:
            raise RepeatedHeaderError(f"{name} was sent more than once; send it once")
    backup = await backups.store_backup(
        session=session,
        blobs=blobs,
        settings=settings,
        user=user,
        version=version,
        timestamp_ms=int(timestamp),
        checksum=checksum,
        declared_size=_declared_size(request),
        body=_request_body(request),
    )
    return BackupStored(id=backup.id)


@router.get(
    "/backup",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The backup's encrypted bytes, streamed as uploaded.",
            "content": _BINARY,
            "headers": {
                "X-Backup-Version": _header("As uploaded."),
                "X-Backup-Timestamp": _header("As uploaded, Unix milliseconds."),
                "X-Backup-Checksum": _header("SHA-256 of the bytes, hex."),
                "ETag": _ETAG,
            },
        },
        **_NOT_MODIFIED,
        **error(404, "No backup yet, or no such backup of the user's."),
        **error(503, "The blob store (S3 or the disk) is unavailable."),
    },
)
async def read_backup(
    user: CurrentUser,
    session: SessionDep,
    blobs: BlobStoreDep,
    backup_id: Annotated[
        uuid.UUID | None, Query(alias="id", description="A backup's id; default: the newest.")
    ] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The newest backup (or the one `id` names), streamed."""
    backup = await backups.find_backup(session=session, user_id=user.id, backup_id=backup_id)
    headers = _backup_headers(backup)
    if _not_modified(if_none_match, headers["ETag"]):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    reader = await backups.open_backup(session=session, blobs=blobs, backup=backup)
    headers["Content-Length"] = str(reader.size)
    return StreamingResponse(aiter(reader), media_type=OCTET_STREAM, headers=headers)


@router.get("/backup/history")
async def backup_history(user: CurrentUser, session: SessionDep) -> list[BackupRead]:
    """The user's backups, newest first."""
    return [
        BackupRead(
            id=backup.id,
            version=backup.version,
            timestamp=backup.timestamp_ms,
            checksum=backup.checksum,
            size_bytes=backup.size_bytes,
            created_at=backup.created_at,
        )
        for backup in await backups.backup_history(session=session, user_id=user.id)
    ]


@router.delete("/backup/{backup_id}", responses=error(404, "No such backup of the user's."))
async def delete_backup(
    backup_id: uuid.UUID, user: CurrentUser, session: SessionDep, blobs: BlobStoreDep
) -> Ok:
    """Delete the backup and its bytes."""
    await backups.delete_backup(session=session, blobs=blobs, user_id=user.id, backup_id=backup_id)
    return Ok()

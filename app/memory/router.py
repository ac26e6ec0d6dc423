"""The user's control over their memory, and the embeddings endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth.dependencies import CurrentUser
from app.core.dependencies import KeyringDep, SessionDep, SettingsDep
from app.core.errors import NotFoundError
from app.core.logging import request_id_var
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error
from app.memory import control, core
from app.memory.cipher import UserCipher
from app.memory.embeddings import embed
from app.memory.schemas import EmbedRequest, EmbedResponse, MemoryCounts, MemoryOverview
from app.usage.dependencies import UsageRecorderDep
from app.usage.ledger import UsageLedger

router = APIRouter(tags=["memory"], responses=EVERY_ROUTE)


@router.get("/memory", responses=AUTHENTICATED)
async def overview(user: CurrentUser, session: SessionDep, keyring: KeyringDep) -> MemoryOverview:
    """What the assistant remembers: core preferences in full, the other tiers counted."""
    cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)
    return MemoryOverview(
        core=await core.list_core(session=session, cipher=cipher, user_id=user.id),
        counts=MemoryCounts(**await control.counts(session=session, user_id=user.id)),
    )


@router.delete(
    # `path`: a key stored before keys were kept free of slashes can still be forgotten.
    "/memory/core/{key:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**AUTHENTICATED, **error(404, "Nothing is remembered under this key.")},
)
async def forget_one(
    key: str, user: CurrentUser, session: SessionDep, keyring: KeyringDep
) -> Response:
    """Forget one preference: its row is deleted."""
    cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)
    if not await core.forget_core(session=session, cipher=cipher, user_id=user.id, key=key):
        raise NotFoundError(f"Nothing is remembered under {key!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/memory", status_code=status.HTTP_204_NO_CONTENT, responses=AUTHENTICATED)
async def forget_all(user: CurrentUser, session: SessionDep) -> Response:
    """Forget everything, in every tier: the rows are deleted."""
    await control.forget_everything(session=session, user_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/storage/vectors/embed",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(413, "The text is over its limit, or the body over this route's limit."),
        **error(502, "The embedding provider failed."),
        **error(503, "No embedding model is configured, or the server is temporarily unavailable."),
    },
)
async def embed_text(
    body: EmbedRequest, user: CurrentUser, settings: SettingsDep, usage: UsageRecorderDep
) -> EmbedResponse:
    """The embedding of `text`, for the desktop's local vector index."""
    with usage.attributed(UsageLedger(user_id=user.id, request_id=request_id_var.get())):
        return EmbedResponse(vector=await embed(settings, body.text))

"""The user's control over their memory, and the embeddings endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.auth.dependencies import CurrentUser
from app.core.dependencies import KeyringDep, SessionDep, SettingsDep
from app.core.errors import NotFoundError
from app.memory import service
from app.memory.embeddings import embed
from app.memory.schemas import EmbedRequest, EmbedResponse, MemoryCounts, MemoryOverview

router = APIRouter(tags=["memory"])


@router.get("/memory")
async def overview(user: CurrentUser, session: SessionDep, keyring: KeyringDep) -> MemoryOverview:
    """What the assistant remembers: core preferences in full, the other tiers counted."""
    cipher = await service.UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)
    return MemoryOverview(
        core=await service.list_core(session=session, cipher=cipher, user_id=user.id),
        counts=MemoryCounts(**await service.counts(session=session, user_id=user.id)),
    )


@router.delete(
    "/memory/core/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "Nothing remembered under this key"}},
)
async def forget_one(
    key: str, user: CurrentUser, session: SessionDep, keyring: KeyringDep
) -> Response:
    """Forget one preference: its row is deleted."""
    cipher = await service.UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)
    if not await service.forget_core(session=session, cipher=cipher, user_id=user.id, key=key):
        raise NotFoundError(f"Nothing is remembered under {key!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/memory", status_code=status.HTTP_204_NO_CONTENT)
async def forget_all(user: CurrentUser, session: SessionDep) -> Response:
    """Forget everything, in every tier: the rows are deleted."""
    await service.forget_everything(session=session, user_id=user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/storage/vectors/embed",
    responses={
        413: {"description": "Text too long"},
        502: {"description": "The embedding provider failed"},
        503: {"description": "No embedding model configured"},
    },
)
async def embed_text(body: EmbedRequest, user: CurrentUser, settings: SettingsDep) -> EmbedResponse:
    """The embedding of `text`, for the desktop's local vector index."""
    return EmbedResponse(vector=await embed(settings, body.text))

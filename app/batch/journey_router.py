"""The setup journey's endpoints: a short interview that writes an agent's prompt template."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from app.auth.dependencies import CurrentUser
from app.batch import journey
from app.batch.dependencies import JourneyGuideDep, UserCipherDep
from app.batch.schemas import JourneyMessage, JourneyReply, JourneyStart
from app.core.dependencies import SessionDep, SettingsDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error
from app.usage.dependencies import UsageRecorderDep

router = APIRouter(prefix="/agents/journey", tags=["batch agents"], responses=EVERY_ROUTE)


def _now() -> datetime:
    return datetime.now(UTC)


@router.post(
    "/start",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(404, "agent_id names no agent of the signed-in user."),
    },
)
async def start(
    body: JourneyStart,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> JourneyReply:
    """Start a setup session: its first question fits `agent_type`; with `agent_id` the
    session refines that agent's prompt template. Sessions last `JOURNEY_TTL_S` (an hour)."""
    return await journey.start(
        session=session,
        cipher=cipher,
        user_id=user.id,
        body=body,
        ttl=timedelta(seconds=settings.journey_ttl_s),
        now=_now(),
    )


@router.post(
    "/message",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **error(404, "No setup session with this id belongs to the signed-in user."),
        **error(409, "The session is finished, or another answer was taken meanwhile."),
        **error(410, "The session expired (an hour after it started)."),
        **error(502, "The model's answer could not be used; the session is unchanged."),
    },
)
async def message(
    body: JourneyMessage,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    guide: JourneyGuideDep,
    usage: UsageRecorderDep,
    settings: SettingsDep,
) -> JourneyReply:
    """Answer the last question: the reply is the next question, or (`done`) the finished
    `prompt_template`; the 5th answer always finishes. 503 when the model failed."""
    return await journey.answer(
        session=session,
        cipher=cipher,
        guide=guide,
        usage=usage,
        prices=settings.llm_prices,
        user_id=user.id,
        body=body,
        now=_now(),
    )

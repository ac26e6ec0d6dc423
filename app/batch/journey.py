"""The setup journey's sessions: a short interview with the model that ends in a prompt template.

A session is one row: the conversation, the template being refined and the
finished template form one JSON document encrypted with the user's data key;
only the counters the rules need (answers, done, expiry) are in the clear.
The database connection is not held while the model thinks: an answer is
stored only if no other answer was stored meanwhile (`answers` unchanged),
and a failed model call leaves the session as it was.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agents.journey import JourneyFailedError, JourneyGuide, Turn, first_question
from agents.llm import MODEL_ERRORS
from app.batch import service
from app.batch.exceptions import (
    JourneyAgentTypeError,
    JourneyAnswerUnusableError,
    JourneyBusyError,
    JourneyExpiredError,
    JourneyFinishedError,
    JourneyNotFoundError,
)
from app.batch.models import AgentType, JourneyKind, JourneySession
from app.batch.schemas import JourneyMessage, JourneyReply, JourneyStart
from app.core.errors import ModelFailedError
from app.core.logging import request_id_var
from app.core.settings import ModelPrice
from app.memory.cipher import UserCipher
from app.usage.callbacks import UsageCallback
from app.usage.ledger import ROLE_JOURNEY, UsageLedger
from app.usage.recorder import UsageRecorder

logger = logging.getLogger(__name__)


def _kind_of(agent_type: AgentType) -> JourneyKind:
    return JourneyKind.LOCAL if agent_type is AgentType.LOCAL_DIRECTORY else JourneyKind.CLOUD


async def start(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    user_id: uuid.UUID,
    body: JourneyStart,
    ttl: timedelta,
    now: datetime,
) -> JourneyReply:
    """Open a session with its first question; from an agent's template when `agent_id` is
    given (404 when the agent is not the user's, 422 when it is of the other kind)."""
    current: str | None = None
    if body.agent_id is not None:
        agent_type, current = await service.agent_prompt_template(
            session=session, cipher=cipher, user_id=user_id, agent_id=body.agent_id
        )
        if _kind_of(agent_type) is not body.agent_type:
            raise JourneyAgentTypeError
    # The user's expired sessions go when they start another: until then they answer 410.
    await session.execute(
        delete(JourneySession).where(
            JourneySession.user_id == user_id, JourneySession.expires_at <= now
        )
    )
    question = first_question(body.agent_type.value, current or None)
    state = {
        "current_template": current or None,
        "turns": [asdict(Turn("assistant", question))],
        "prompt_template": None,
    }
    journey = JourneySession(
        user_id=user_id,
        kind=body.agent_type.value,
        answers=0,
        done=False,
        state_encrypted=service.seal(cipher, state),
        expires_at=now + ttl,
    )
    session.add(journey)
    await session.commit()
    return JourneyReply(session_id=journey.id, message=question, done=False)


async def _open_session(
    *, session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime
) -> JourneySession:
    journey = await session.scalar(
        select(JourneySession).where(
            JourneySession.id == session_id, JourneySession.user_id == user_id
        )
    )
    if journey is None:
        raise JourneyNotFoundError
    if journey.expires_at <= now:
        raise JourneyExpiredError
    if journey.done:
        raise JourneyFinishedError
    return journey


async def answer(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    guide: JourneyGuide,
    usage: UsageRecorder,
    prices: Mapping[str, ModelPrice],
    user_id: uuid.UUID,
    body: JourneyMessage,
    now: datetime,
) -> JourneyReply:
    """Take the user's answer and return the model's next question, or the finished template.

    404 for a session that is not the user's, 410 once expired, 409 once done
    (or when another answer was taken meanwhile); 503 when the model failed and
    502 when its answer was unusable, the session unchanged in both cases. The
    model call is the request's usage (a `model_usage` row with role `journey`).
    """
    journey = await _open_session(
        session=session, user_id=user_id, session_id=body.session_id, now=now
    )
    answers, kind = journey.answers, journey.kind
    state: dict[str, Any] = service.unseal(cipher, journey.state_encrypted)
    await session.rollback()  # no connection held while the model thinks
    turns = [Turn(**turn) for turn in state["turns"]] + [Turn("user", body.message)]
    ledger = UsageLedger(user_id=user_id, request_id=request_id_var.get())
    try:
        with usage.attributed(ledger):  # stored whatever the call's outcome
            reply = await guide.reply(
                kind="local" if kind == JourneyKind.LOCAL else "cloud",
                current_template=state["current_template"],
                turns=turns,
                callbacks=[UsageCallback(ledger, prices=prices, role=ROLE_JOURNEY)],
            )
    except MODEL_ERRORS as exc:
        logger.warning("journey model call failed", extra={"error": type(exc).__name__})
        raise ModelFailedError from exc
    except JourneyFailedError as exc:
        logger.warning("journey model answer unusable", extra={"error": str(exc)})
        raise JourneyAnswerUnusableError from exc
    turns.append(Turn("assistant", reply.message))
    state |= {"turns": [asdict(t) for t in turns], "prompt_template": reply.prompt_template}
    stored = await session.scalar(
        update(JourneySession)
        .where(
            JourneySession.id == body.session_id,
            JourneySession.answers == answers,
            JourneySession.done.is_(False),
        )
        .values(answers=answers + 1, done=reply.done, state_encrypted=service.seal(cipher, state))
        .returning(JourneySession.id)
    )
    if stored is None:
        raise JourneyBusyError
    await session.commit()
    return JourneyReply(
        session_id=body.session_id,
        message=reply.message,
        done=reply.done,
        prompt_template=reply.prompt_template,
    )

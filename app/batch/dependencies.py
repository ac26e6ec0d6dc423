"""The batch domain's `Annotated` dependencies (see `app.core.dependencies`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from agents.journey import JourneyGuide
from agents.llm import LLMNotConfiguredError
from app.auth.dependencies import CurrentUser
from app.batch.scheduled import BatchScheduler
from app.core.dependencies import KeyringDep, SessionDep, from_state
from app.core.errors import ModelNotConfiguredError
from app.memory.cipher import UserCipher

BatchSchedulerDep = Annotated[BatchScheduler, Depends(from_state("batch_scheduler"))]


async def _user_cipher(user: CurrentUser, session: SessionDep, keyring: KeyringDep) -> UserCipher:
    return await UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)


# What the signed-in user wrote is encrypted and decrypted with this.
UserCipherDep = Annotated[UserCipher, Depends(_user_cipher)]


def _journey_guide(
    guide: Annotated[JourneyGuide | None, Depends(from_state("journey_guide"))],
) -> JourneyGuide:
    if guide is None:
        raise ModelNotConfiguredError(str(LLMNotConfiguredError()))
    return guide


# The model behind the setup journey; 503 naming LLM_MODEL when none is configured.
JourneyGuideDep = Annotated[JourneyGuide, Depends(_journey_guide)]

"""The batch domain's `Annotated` dependencies (see `app.core.dependencies`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.auth.dependencies import CurrentUser
from app.batch.scheduled import BatchScheduler
from app.core.dependencies import KeyringDep, SessionDep, from_state
from app.memory.cipher import UserCipher

BatchSchedulerDep = Annotated[BatchScheduler, Depends(from_state("batch_scheduler"))]


async def _user_cipher(user: CurrentUser, session: SessionDep, keyring: KeyringDep) -> UserCipher:
    return await UserCipher.for_user(session=session, keyring=keyring, user_id=user.id)


# What the signed-in user wrote is encrypted and decrypted with this.
UserCipherDep = Annotated[UserCipher, Depends(_user_cipher)]

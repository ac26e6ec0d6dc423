"""The auth domain's dependencies.

`CurrentUser` is the one every protected route (and the device socket) uses;
`PasswordChecksDep` bounds the bcrypt work of logins and registrations.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.models import User
from app.core.dependencies import SessionDep, SettingsDep, from_state
from app.core.errors import UnauthorizedError

_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


async def _current_user(
    session: SessionDep,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None:
        raise UnauthorizedError
    return await service.authenticate(
        session=session, settings=settings, access_token=credentials.credentials
    )


CurrentUser = Annotated[User, Depends(_current_user)]
PasswordChecksDep = Annotated[service.PasswordChecks, Depends(from_state("password_checks"))]

"""The auth domain's dependencies.

`CurrentUser` is the one every protected route uses: it authenticates the
request and counts it against the user's per-minute limit (their plan's, read
from the database with the account), so every authenticated route is rate
limited. A refused token counts against the client's address instead.
`PasswordChecksDep` bounds the bcrypt work of logins and registrations.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth import service
from app.auth.models import User
from app.core.dependencies import SessionDep, SettingsDep, from_state
from app.core.errors import UnauthorizedError
from app.tiers.dependencies import RateLimiterDep, client_address
from app.tiers.rate_limits import limit_address, limit_user

_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


async def _current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    try:
        if credentials is None:
            raise UnauthorizedError
        user = await service.authenticate(
            session=session, settings=settings, access_token=credentials.credentials
        )
    except UnauthorizedError:
        # Guessing tokens costs the guesser's address like any unauthenticated request.
        await limit_address(limiter=limiter, settings=settings, address=client_address(request))
        raise
    await limit_user(limiter=limiter, settings=settings, user_id=user.id, plan=user)
    return user


CurrentUser = Annotated[User, Depends(_current_user)]
PasswordChecksDep = Annotated[service.PasswordChecks, Depends(from_state("password_checks"))]

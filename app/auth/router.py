"""HTTP endpoints for accounts and tokens (SPEC §5)."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.auth import service
from app.auth.dependencies import CurrentUser, PasswordChecksDep
from app.auth.schemas import AuthTokens, RefreshRequest, UserCreate, UserLogin, UserProfile
from app.core.dependencies import KeyringDep, SessionDep, SettingsDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error
from app.tiers.dependencies import LIMITED_BY_ADDRESS, RateLimiterDep

router = APIRouter(prefix="/auth", tags=["auth"], responses=EVERY_ROUTE)


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses={**JSON_BODY, **error(409, "An account with this email already exists.")},
    dependencies=[LIMITED_BY_ADDRESS],
)
async def register(
    body: UserCreate,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
    password_checks: PasswordChecksDep,
) -> AuthTokens:
    """Create an account and log it in."""
    return await service.register(
        session=session,
        settings=settings,
        keyring=keyring,
        password_checks=password_checks,
        email=str(body.email),
        password=body.password,
    )


@router.post(
    "/login",
    responses={
        **JSON_BODY,
        **error(401, "Incorrect email or password."),
        **error(
            429,
            "Too many requests from this address, or too many failed logins for this email "
            "(whether or not it has an account); try again after `Retry-After`.",
        ),
    },
    dependencies=[LIMITED_BY_ADDRESS],
)
async def login(
    body: UserLogin,
    session: SessionDep,
    settings: SettingsDep,
    password_checks: PasswordChecksDep,
    limiter: RateLimiterDep,
) -> AuthTokens:
    """Exchange email and password for tokens."""
    return await service.login(
        session=session,
        settings=settings,
        password_checks=password_checks,
        limiter=limiter,
        email=str(body.email),
        password=body.password,
    )


@router.post(
    "/refresh",
    responses={**JSON_BODY, **error(401, "The refresh token is invalid, expired or used.")},
    dependencies=[LIMITED_BY_ADDRESS],
)
async def refresh(body: RefreshRequest, session: SessionDep, settings: SettingsDep) -> AuthTokens:
    """Rotate tokens. The presented refresh token stops working; presenting it again
    revokes every token of that login."""
    return await service.refresh(
        session=session, settings=settings, refresh_token=body.refresh_token
    )


@router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=JSON_BODY,
    dependencies=[LIMITED_BY_ADDRESS],
)
async def logout(body: RefreshRequest, session: SessionDep) -> None:
    """End the login the refresh token belongs to; its access tokens stop working too."""
    await service.logout(session=session, refresh_token=body.refresh_token)


@router.get("/me", responses=AUTHENTICATED)
async def me(user: CurrentUser) -> UserProfile:
    """The signed-in account."""
    return UserProfile.model_validate(user, from_attributes=True)

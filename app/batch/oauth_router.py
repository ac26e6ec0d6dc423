"""OAuth connection endpoints (SPEC §5): authorize, callback, refresh, per provider."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from app.auth.dependencies import CurrentUser
from app.batch import oauth
from app.batch.dependencies import UserCipherDep
from app.batch.exceptions import OAuthCallbackError, ProviderUnavailableError
from app.batch.models import CloudProvider
from app.batch.schemas import EncryptedToken
from app.core.dependencies import KeyringDep, SessionDep, SettingsDep
from app.core.responses import AUTHENTICATED, EVERY_ROUTE, JSON_BODY, error

router = APIRouter(prefix="/oauth", tags=["oauth connections"], responses=EVERY_ROUTE)

NOT_CONFIGURED = error(503, "The provider is not configured; the detail names the variables.")
UNREACHABLE = error(502, "The provider could not be reached or failed; try again later.")
_PARAM = Annotated[str | None, Query(max_length=4096)]


class AuthorizationUrl(BaseModel):
    authorization_url: str


class ConnectionReference(BaseModel):
    encrypted_token: EncryptedToken


def _now() -> datetime:
    return datetime.now(UTC)


@router.get("/{provider}/authorize", responses={**AUTHENTICATED, **NOT_CONFIGURED})
async def authorize(
    provider: CloudProvider,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> AuthorizationUrl:
    """The provider's consent page to open in the browser (PKCE; the state lasts 10 minutes)."""
    url = await oauth.start_authorization(
        session=session,
        cipher=cipher,
        oauth=oauth.provider_oauth(settings, provider),
        user_id=user.id,
        now=_now(),
    )
    return AuthorizationUrl(authorization_url=url)


@router.get(
    "/{provider}/callback",
    responses={
        302: {
            "description": "With `OAUTH_DESKTOP_REDIRECT` set: on to the app, with"
            " `encrypted_token` or `error` in the query.",
            "headers": {
                "Location": {"description": "The app's URL.", "schema": {"type": "string"}}
            },
        },
        **error(400, "Bad, reused or expired state; the provider refused or consent was denied."),
        **UNREACHABLE,
        **NOT_CONFIGURED,
    },
    response_model=ConnectionReference,
)
async def callback(
    provider: CloudProvider,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    code: _PARAM = None,
    state: _PARAM = None,
    error: _PARAM = None,
) -> ConnectionReference | RedirectResponse:
    """Where the provider sends the browser back (no JWT: the state authenticates).

    With `OAUTH_DESKTOP_REDIRECT` set, the browser is sent on to the app with
    `encrypted_token` (or `error`) in the query instead.
    """
    desktop = settings.oauth_desktop_redirect
    try:
        reference = await oauth.complete_authorization(
            session=session,
            keyring=keyring,
            oauth=oauth.provider_oauth(settings, provider),
            code=code,
            state=state,
            provider_error=error,
            now=_now(),
        )
    except (OAuthCallbackError, ProviderUnavailableError) as exc:
        if desktop is None:
            raise
        return RedirectResponse(_with_query(desktop, error=exc.detail), status_code=302)
    if desktop is not None:
        return RedirectResponse(_with_query(desktop, encrypted_token=reference), status_code=302)
    return ConnectionReference(encrypted_token=reference)


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


@router.post(
    "/{provider}/refresh",
    responses={
        **AUTHENTICATED,
        **JSON_BODY,
        **NOT_CONFIGURED,
        **UNREACHABLE,
        **error(
            400,
            "encrypted_token names no connection of the signed-in user to this provider,"
            " or the provider no longer accepts the connection.",
        ),
    },
)
async def refresh(
    provider: CloudProvider,
    body: ConnectionReference,
    user: CurrentUser,
    session: SessionDep,
    cipher: UserCipherDep,
    settings: SettingsDep,
) -> ConnectionReference:
    """Refresh the connection's provider token now; the reference stays the same."""
    provider_oauth = oauth.provider_oauth(settings, provider)
    tokens = await oauth.connection_tokens(
        session=session,
        cipher=cipher,
        oauth=provider_oauth,
        user_id=user.id,
        connection=oauth.connection_id(cipher, provider, body.encrypted_token),
    )
    await tokens.refresh(_now())
    return body

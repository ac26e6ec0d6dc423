"""OAuth connections to Gmail, Outlook and Teams: authorize, callback, refresh.

The token handling is Authlib's (`AsyncOAuth2Client`: PKCE S256, the code and
refresh grants); this module keeps what is ours: a `state` that is single-use,
bound to the user who asked and ten minutes long; tokens stored encrypted with
the user's data key; and the opaque `encrypted_token` the desktop holds — the
connection's id sealed with the user's key, never the provider's token.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import httpx
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from cryptography.fernet import InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.batch.exceptions import (
    ConnectionRefusedByProviderError,
    OAuthCallbackError,
    ProviderNotConfiguredError,
    ProviderUnavailableError,
    UnknownConnectionError,
)
from app.batch.models import CloudProvider, OAuthConnection, OAuthState
from app.core.keys import MasterKeyring
from app.core.settings import Settings, secret_value
from app.memory.cipher import UserCipher


def _http_modules() -> tuple[ModuleType, ...]:
    """httpx, and httpx2 when installed: Authlib's client is built on httpx2 then, and its
    errors are not httpx's (uncaught, a provider outage was a 500)."""
    try:
        return (httpx, importlib.import_module("httpx2"))
    except ImportError:
        return (httpx,)


_HTTP = _http_modules()
_HTTP_ERRORS: tuple[type[Exception], ...] = tuple(m.HTTPError for m in _HTTP)
_HTTP_STATUS_ERRORS: tuple[type[Exception], ...] = tuple(m.HTTPStatusError for m in _HTTP)
_HTTP_TRANSPORT_ERRORS: tuple[type[Exception], ...] = tuple(m.TransportError for m in _HTTP)

STATE_TTL = timedelta(minutes=10)
_HTTP_TIMEOUT_S = 30.0
_GOOGLE_SCOPES = ["https://www.googleapis.com/auth/gmail.readonly"]
_MICROSOFT_SCOPES = ["offline_access", "Mail.Read", "Chat.Read", "ChannelMessage.Read.All"]
_PROVIDER_NAMES = {
    CloudProvider.GMAIL: "Gmail",
    CloudProvider.OUTLOOK: "Outlook",
    CloudProvider.TEAMS: "Microsoft Teams",
}


@dataclass(frozen=True, slots=True)
class ProviderOAuth:
    """One provider's OAuth client configuration, from the settings."""

    provider: CloudProvider
    client_id: str
    client_secret: str
    auth_url: str
    token_url: str
    redirect_uri: str
    scopes: list[str]
    # Google takes the secret either way; Microsoft's token endpoint wants it in the body.
    auth_method: str
    extra_authorize_params: dict[str, str]

    def client(self, **kwargs: Any) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=" ".join(self.scopes),
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method=self.auth_method,
            timeout=_HTTP_TIMEOUT_S,
            **kwargs,
        )


def provider_oauth(settings: Settings, provider: CloudProvider) -> ProviderOAuth:
    """The provider's configuration; `ProviderNotConfiguredError` (503) names what is missing."""
    google = provider is CloudProvider.GMAIL
    prefix = "GOOGLE" if google else "MICROSOFT"
    client_id = settings.google_client_id if google else settings.microsoft_client_id
    client_secret = secret_value(
        settings.google_client_secret if google else settings.microsoft_client_secret
    )
    values = {
        "OAUTH_REDIRECT_BASE": settings.oauth_redirect_base,
        f"{prefix}_CLIENT_ID": client_id,
        f"{prefix}_CLIENT_SECRET": client_secret,
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        msg = (
            f"{_PROVIDER_NAMES[provider]} is not configured on this server;"
            f" the operator must set {', '.join(missing)}"
        )
        raise ProviderNotConfiguredError(msg)
    # Checked above.
    assert settings.oauth_redirect_base
    assert client_id
    assert client_secret
    redirect_uri = (
        f"{settings.oauth_redirect_base.rstrip('/')}/api/v1/oauth/{provider.value}/callback"
    )
    if google:
        return ProviderOAuth(
            provider=provider,
            client_id=client_id,
            client_secret=client_secret,
            auth_url=settings.google_auth_url,
            token_url=settings.google_token_url,
            redirect_uri=redirect_uri,
            scopes=_GOOGLE_SCOPES,
            auth_method="client_secret_basic",
            # A refresh token is only issued for offline access, and again only on consent.
            extra_authorize_params={"access_type": "offline", "prompt": "consent"},
        )
    login = f"https://login.microsoftonline.com/{settings.microsoft_tenant}/oauth2/v2.0"
    return ProviderOAuth(
        provider=provider,
        client_id=client_id,
        client_secret=client_secret,
        auth_url=settings.microsoft_auth_url or f"{login}/authorize",
        token_url=settings.microsoft_token_url or f"{login}/token",
        redirect_uri=redirect_uri,
        scopes=_MICROSOFT_SCOPES,
        auth_method="client_secret_post",
        extra_authorize_params={},
    )


def _provider_down(exc: Exception) -> bool:
    """Whether a token-endpoint failure is the provider's outage rather than its refusal."""
    if isinstance(exc, _HTTP_STATUS_ERRORS):
        status: int = exc.response.status_code  # type: ignore[attr-defined]
        return status >= 500 or status == 429
    return isinstance(exc, _HTTP_TRANSPORT_ERRORS)


def _state_digest(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _reference(cipher: UserCipher, provider: CloudProvider, connection_id: uuid.UUID) -> str:
    return cipher.encrypt(f"{provider.value}:{connection_id}").decode()


def connection_id(cipher: UserCipher, provider: CloudProvider, reference: str) -> uuid.UUID:
    """The connection an `encrypted_token` names; refused unless the user's, for `provider`."""
    try:
        named, _, raw_id = cipher.decrypt(reference.encode()).partition(":")
        found = uuid.UUID(raw_id)
    except (InvalidToken, ValueError):
        raise UnknownConnectionError from None
    if named != provider.value:
        raise UnknownConnectionError
    return found


# -- authorize and callback -----------------------------------------------------------


async def start_authorization(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    oauth: ProviderOAuth,
    user_id: uuid.UUID,
    now: datetime,
) -> str:
    """The provider's authorization URL, with PKCE and a fresh state bound to the user."""
    verifier = secrets.token_urlsafe(64)
    state = secrets.token_urlsafe(32)
    async with oauth.client() as client:
        url, _ = client.create_authorization_url(
            oauth.auth_url, state=state, code_verifier=verifier, **oauth.extra_authorize_params
        )
    await session.execute(delete(OAuthState).where(OAuthState.expires_at < now))
    session.add(
        OAuthState(
            state_digest=_state_digest(state),
            user_id=user_id,
            provider=oauth.provider.value,
            verifier_encrypted=cipher.encrypt(verifier),
            expires_at=now + STATE_TTL,
        )
    )
    await session.commit()
    return str(url)


async def _take_state(
    *, session: AsyncSession, provider: CloudProvider, state: str | None, now: datetime
) -> OAuthState:
    """Consume the state (whatever happens next, it cannot be used again)."""
    if not state:
        msg = "The authorization has no state; start connecting again from the app"
        raise OAuthCallbackError(msg)
    taken: OAuthState | None = await session.scalar(
        delete(OAuthState)
        .where(OAuthState.state_digest == _state_digest(state))
        .returning(OAuthState)
    )
    await session.commit()
    if taken is None:
        msg = "This authorization is unknown or was already used; start connecting again"
        raise OAuthCallbackError(msg)
    if taken.provider != provider.value or taken.expires_at <= now:
        msg = "This authorization has expired; start connecting again"
        raise OAuthCallbackError(msg)
    return taken


async def complete_authorization(
    *,
    session: AsyncSession,
    keyring: MasterKeyring,
    oauth: ProviderOAuth,
    code: str | None,
    state: str | None,
    provider_error: str | None,
    now: datetime,
) -> str:
    """Exchange the code for tokens and store them encrypted; the `encrypted_token` reference.

    Any failure is an `OAuthCallbackError` (400) and stores nothing; a provider that
    cannot be reached or fails is a `ProviderUnavailableError` (502).
    """
    taken = await _take_state(session=session, provider=oauth.provider, state=state, now=now)
    if provider_error is not None:
        if provider_error == "access_denied":
            msg = f"Access to {_PROVIDER_NAMES[oauth.provider]} was not granted"
        else:
            msg = f"{_PROVIDER_NAMES[oauth.provider]} refused the authorization ({provider_error})"
        raise OAuthCallbackError(msg[:300])
    if not code:
        msg = "The provider sent no authorization code"
        raise OAuthCallbackError(msg)
    cipher = await UserCipher.for_user(session=session, keyring=keyring, user_id=taken.user_id)
    try:
        async with oauth.client() as client:
            token = await client.fetch_token(
                oauth.token_url,
                code=code,
                code_verifier=cipher.decrypt(taken.verifier_encrypted),
            )
    except (OAuthError, *_HTTP_ERRORS, ValueError) as exc:
        if _provider_down(exc):
            raise ProviderUnavailableError(_PROVIDER_NAMES[oauth.provider]) from exc
        msg = f"{_PROVIDER_NAMES[oauth.provider]} did not accept the authorization code"
        raise OAuthCallbackError(msg) from exc
    connection = OAuthConnection(
        id=uuid.uuid4(),
        user_id=taken.user_id,
        provider=oauth.provider.value,
        tokens_encrypted=cipher.encrypt(json.dumps(dict(token))),
        created_at=now,
        updated_at=now,
    )
    session.add(connection)
    await session.commit()
    return _reference(cipher, oauth.provider, connection.id)


# -- tokens for runs, refreshing -----------------------------------------------------------


class ConnectionTokens:
    """A connection's tokens, decrypted for one run or request; refreshing stores the new ones."""

    def __init__(
        self,
        *,
        session: AsyncSession,
        cipher: UserCipher,
        oauth: ProviderOAuth,
        connection: OAuthConnection,
    ) -> None:
        self._session = session
        self._cipher = cipher
        self._oauth = oauth
        self._connection = connection
        self.token: dict[str, Any] = json.loads(cipher.decrypt(connection.tokens_encrypted))

    @property
    def access_token(self) -> str:
        return str(self.token.get("access_token", ""))

    def expired(self, now: datetime) -> bool:
        expires_at = self.token.get("expires_at")
        return isinstance(expires_at, int | float) and expires_at <= now.timestamp() + 30

    async def refresh(self, now: datetime) -> None:
        """Use the refresh grant; `ConnectionRefusedByProviderError` when the provider refuses,
        `ProviderUnavailableError` when it cannot be reached or fails."""
        refresh_token = self.token.get("refresh_token")
        if not refresh_token:
            raise ConnectionRefusedByProviderError
        try:
            async with self._oauth.client() as client:
                fresh = dict(
                    await client.refresh_token(self._oauth.token_url, refresh_token=refresh_token)
                )
        except (OAuthError, *_HTTP_ERRORS, ValueError) as exc:
            if _provider_down(exc):
                raise ProviderUnavailableError(_PROVIDER_NAMES[self._oauth.provider]) from exc
            raise ConnectionRefusedByProviderError from exc
        # Providers may leave the refresh token out of the answer: the old one still holds.
        self.token = {"refresh_token": refresh_token, **fresh}
        self._connection.tokens_encrypted = self._cipher.encrypt(json.dumps(self.token))
        self._connection.updated_at = now
        await self._session.commit()


async def connection_tokens(
    *,
    session: AsyncSession,
    cipher: UserCipher,
    oauth: ProviderOAuth,
    user_id: uuid.UUID,
    connection: uuid.UUID,
) -> ConnectionTokens:
    """The tokens of one of the user's connections (`UnknownConnectionError` otherwise)."""
    found = await session.scalar(
        select(OAuthConnection).where(
            OAuthConnection.id == connection,
            OAuthConnection.user_id == user_id,
        )
    )
    if found is None:
        raise UnknownConnectionError
    return ConnectionTokens(session=session, cipher=cipher, oauth=oauth, connection=found)


async def connection_exists(
    *, session: AsyncSession, user_id: uuid.UUID, connection_id: uuid.UUID
) -> bool:
    found = await session.scalar(
        select(OAuthConnection.id).where(
            OAuthConnection.id == connection_id, OAuthConnection.user_id == user_id
        )
    )
    return found is not None

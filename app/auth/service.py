"""Accounts and tokens: registration, login, refresh rotation, authentication.

A login opens an `AuthSession`; every refresh token it hands out belongs to
that session and is single-use. Exchanging a refresh token twice can only mean
a copy was stolen, so the whole session is revoked, and with it every access
token that names it.

bcrypt is slow by design, so it never runs on the event loop nor while a
pooled database connection is held, and `PasswordChecks` bounds how many wait
for it: a flood of logins is refused with 503 instead of starving everyone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import ParamSpec, TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.exceptions import (
    EmailAlreadyRegisteredError,
    InvalidCredentialsError,
    InvalidRefreshTokenError,
    UnknownUserError,
)
from app.auth.models import AuthSession, RefreshToken, User
from app.auth.schemas import AuthTokens
from app.core import security
from app.core.errors import ServiceUnavailableError, TooManyRequestsError, UnauthorizedError
from app.core.keys import MasterKeyring
from app.core.rate_limit import Quota, RateLimiter
from app.core.settings import ResolvedSettings, Settings
from app.tiers.matrix import Tier

logger = logging.getLogger(__name__)

_P = ParamSpec("_P")
_T = TypeVar("_T")

SESSION_ENDED = "Session has ended; log in again"
TOO_MANY_LOGINS = "Too many failed logins for this email; try again later"
_LOGIN_SCOPE = "login"
SERVER_BUSY = "The server is busy; try again shortly"
# A bcrypt check takes about 0.25 s at the production work factor, so a full
# queue drains in a few seconds.
BUSY_RETRY_AFTER_S = 2


def normalize_email(email: str) -> str:
    return email.strip().lower()


@lru_cache(maxsize=4)
def _decoy_hash(rounds: int) -> str:
    """A hash to check unknown emails against, so they cost what a wrong password costs."""
    return security.hash_password(uuid.uuid4().hex, rounds=rounds)


def _password_matches(password: str, password_hash: str | None, rounds: int) -> bool:
    # Runs in a worker thread; an unknown email (no hash) is checked against the decoy.
    if password_hash is None:
        security.verify_password(password, _decoy_hash(rounds))
        return False
    return security.verify_password(password, password_hash)


class PasswordChecks:
    """Runs bcrypt in worker threads: `workers` at once, at most `max_waiting` queued.

    One per app. Past that, `ServiceUnavailableError` (503, "busy") at once:
    waiting longer would only let requests pile up until everything times out.
    """

    def __init__(self, *, workers: int, max_waiting: int) -> None:
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + max_waiting
        self._admitted = 0

    async def run(self, check: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        if self._admitted >= self._capacity:
            raise ServiceUnavailableError(SERVER_BUSY, retry_after=BUSY_RETRY_AFTER_S)
        self._admitted += 1
        try:
            async with self._slots:
                return await asyncio.to_thread(check, *args, **kwargs)
        finally:
            self._admitted -= 1


async def _issue_tokens(
    *, session: AsyncSession, settings: ResolvedSettings, user_id: uuid.UUID, session_id: uuid.UUID
) -> AuthTokens:
    refresh_token = security.new_refresh_token()
    session.add(
        RefreshToken(
            session_id=session_id,
            token_hash=security.hash_refresh_token(refresh_token),
            expires_at=datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s),
        )
    )
    access_token, expires_at = security.issue_access_token(
        user_id=user_id,
        session_id=session_id,
        secret=settings.jwt_secret.get_secret_value(),
        ttl_s=settings.access_token_ttl_s,
    )
    return AuthTokens(access_token=access_token, refresh_token=refresh_token, expires_at=expires_at)


async def _open_session(
    *, session: AsyncSession, settings: ResolvedSettings, user_id: uuid.UUID
) -> AuthTokens:
    auth_session = AuthSession(id=uuid.uuid4(), user_id=user_id)
    session.add(auth_session)
    await session.flush()
    return await _issue_tokens(
        session=session, settings=settings, user_id=user_id, session_id=auth_session.id
    )


async def register(
    *,
    session: AsyncSession,
    settings: ResolvedSettings,
    keyring: MasterKeyring,
    password_checks: PasswordChecks,
    email: str,
    password: str,
) -> AuthTokens:
    """Create an account with its own wrapped data key, and log it in."""
    # Hashed before the session first touches the database: no connection is held meanwhile.
    password_hash = await password_checks.run(
        security.hash_password, password, rounds=settings.bcrypt_rounds
    )
    user = User(
        id=uuid.uuid4(),
        email=normalize_email(email),
        password_hash=password_hash,
        wrapped_data_key=keyring.new_wrapped_data_key(),
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise EmailAlreadyRegisteredError from exc
    tokens = await _open_session(session=session, settings=settings, user_id=user.id)
    await session.commit()
    logger.info("account registered", extra={"user_id": str(user.id)})
    return tokens


def _login_quota(settings: Settings) -> Quota:
    return Quota(settings.login_max_failures, settings.login_lock_s)


async def login(
    *,
    session: AsyncSession,
    settings: ResolvedSettings,
    password_checks: PasswordChecks,
    limiter: RateLimiter,
    email: str,
    password: str,
) -> AuthTokens:
    """Check the password and open a new login session.

    An unknown email and a wrong password get the same error after the same
    bcrypt work, so neither the answer nor its timing tells which it was. Each
    email may try LOGIN_MAX_FAILURES times in LOGIN_LOCK_S seconds; a success
    forgets the earlier attempts. The attempt is counted before the password is
    checked, so parallel guesses cannot slip past the limit; unknown emails are
    counted and refused exactly like known ones.
    """
    email = normalize_email(email)
    quota = _login_quota(settings)
    # Hashed: a shared limiter store (Redis) never holds the emails themselves.
    email_key = hashlib.sha256(email.encode()).hexdigest()
    retry_after = await limiter.hit(quota, scope=_LOGIN_SCOPE, key=email_key)
    if retry_after is not None:
        raise TooManyRequestsError(TOO_MANY_LOGINS, retry_after=retry_after)
    user = await session.scalar(select(User).where(User.email == email))
    # End the read so its connection goes back to the pool before bcrypt runs;
    # the session opens a new one for the writes below.
    await session.commit()
    password_ok = await password_checks.run(
        _password_matches, password, user.password_hash if user else None, settings.bcrypt_rounds
    )
    if user is None or not password_ok:
        raise InvalidCredentialsError
    tokens = await _open_session(session=session, settings=settings, user_id=user.id)
    await session.commit()
    await limiter.clear(quota, scope=_LOGIN_SCOPE, key=email_key)
    return tokens


async def _revoke_session(*, session: AsyncSession, session_id: uuid.UUID) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )


async def refresh(
    *, session: AsyncSession, settings: ResolvedSettings, refresh_token: str
) -> AuthTokens:
    """Exchange a refresh token for new tokens; the presented one stops working.

    The exchange is one atomic UPDATE, so of two concurrent exchanges of the
    same token exactly one wins and the other is treated as reuse.
    """
    token_hash = security.hash_refresh_token(refresh_token)
    now = datetime.now(UTC)
    claimed = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.used_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(RefreshToken.session_id)
    )
    session_id = claimed.scalar_one_or_none()
    if session_id is None:
        reused = await session.scalar(
            select(RefreshToken).where(
                RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_not(None)
            )
        )
        if reused is not None:
            await _revoke_session(session=session, session_id=reused.session_id)
            await session.commit()
            logger.warning(
                "refresh token reused; login session revoked",
                extra={"session_id": str(reused.session_id)},
            )
        raise InvalidRefreshTokenError
    auth_session = await session.scalar(
        select(AuthSession).where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
    )
    if auth_session is None:
        await session.commit()
        raise InvalidRefreshTokenError
    tokens = await _issue_tokens(
        session=session, settings=settings, user_id=auth_session.user_id, session_id=session_id
    )
    await session.commit()
    return tokens


async def logout(*, session: AsyncSession, refresh_token: str) -> None:
    """End the login session the refresh token belongs to (idempotent)."""
    session_id = await session.scalar(
        select(RefreshToken.session_id).where(
            RefreshToken.token_hash == security.hash_refresh_token(refresh_token)
        )
    )
    if session_id is not None:
        await _revoke_session(session=session, session_id=session_id)
        await session.commit()


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session_id: uuid.UUID  # the login the token belongs to


async def authenticate(
    *, session: AsyncSession, settings: ResolvedSettings, access_token: str
) -> User:
    """The user an access token speaks for, if the token and its session are still good."""
    signed_in = await sign_in_with_token(
        session=session, settings=settings, access_token=access_token
    )
    return signed_in.user


async def login_is_active(*, session: AsyncSession, session_id: uuid.UUID) -> bool:
    """Whether a login has not been revoked (long-lived connections re-check it)."""
    revoked = await session.scalar(
        select(AuthSession.revoked_at.is_not(None)).where(AuthSession.id == session_id)
    )
    return revoked is False


async def sign_in_with_token(
    *, session: AsyncSession, settings: ResolvedSettings, access_token: str
) -> SignedIn:
    """`authenticate`, also telling which login the token belongs to."""
    try:
        claims = security.decode_access_token(
            access_token, secret=settings.jwt_secret.get_secret_value()
        )
    except security.InvalidAccessTokenError as exc:
        detail = "Access token expired" if exc.expired else "Invalid access token"
        raise UnauthorizedError(detail, invalid_token=True) from exc
    user = await session.scalar(
        select(User)
        .join(AuthSession, AuthSession.user_id == User.id)
        .where(
            User.id == claims.user_id,
            AuthSession.id == claims.session_id,
            AuthSession.revoked_at.is_(None),
        )
    )
    if user is None:
        raise UnauthorizedError(SESSION_ENDED, invalid_token=True)
    return SignedIn(user=user, session_id=claims.session_id)


@dataclass(frozen=True, slots=True)
class Plan:
    """The tier and seats stored with an account (what `app.tiers` reads)."""

    tier: str
    seats: int


async def plan_of(*, session: AsyncSession, user_id: uuid.UUID) -> Plan:
    """The account's plan as stored now (the device socket reads it per request)."""
    row = (
        await session.execute(select(User.tier, User.seats).where(User.id == user_id))
    ).one_or_none()
    if row is None:
        raise UnknownUserError
    return Plan(tier=row.tier, seats=row.seats)


async def lock_plan(*, session: AsyncSession, user_id: uuid.UUID) -> Plan | None:
    """The account's plan, its row locked until the transaction ends (None: no account).

    Billing takes this lock before it changes a user's subscriptions, so two
    webhook deliveries for one user apply one after the other.
    """
    row = (
        await session.execute(
            select(User.tier, User.seats).where(User.id == user_id).with_for_update()
        )
    ).one_or_none()
    return None if row is None else Plan(tier=row.tier, seats=row.seats)


async def set_plan(*, session: AsyncSession, user_id: uuid.UUID, tier: Tier, seats: int) -> None:
    """Store the account's plan; only billing calls this (the client never can)."""
    await session.execute(
        update(User).where(User.id == user_id).values(tier=tier.value, seats=seats)
    )


async def data_key(*, session: AsyncSession, keyring: MasterKeyring, user_id: uuid.UUID) -> bytes:
    """The user's data key, unwrapped: for encrypting their data in this process only.

    Only the wrapped form is stored (with the account); never store what this returns.
    """
    wrapped = await session.scalar(select(User.wrapped_data_key).where(User.id == user_id))
    if wrapped is None:
        raise UnknownUserError
    return keyring.raw_data_key(wrapped)


async def rewrap_all_data_keys(*, session: AsyncSession, keyring: MasterKeyring) -> int:
    """Re-wrap every user's data key with the current master key; returns how many.

    Runs in one transaction: either every key moves to the new master key or
    none does, so an interrupted rotation can simply be run again.
    """
    users = (await session.scalars(select(User).with_for_update())).all()
    for user in users:
        user.wrapped_data_key = keyring.rewrap(user.wrapped_data_key)
    await session.commit()
    return len(users)

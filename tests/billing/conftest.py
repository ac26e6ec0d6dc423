"""Billing tests: the app with billing pointed at a fake Stripe on loopback, and helpers."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.settings import Settings
from app.main import create_app
from app.tiers.downgrade import Restriction
from app.tiers.matrix import TierLimits
from tests.billing.fake_stripe import FakeStripe, billing_settings, sign

PASSWORD = "a long passphrase"
WEBHOOK = "/api/v1/billing/webhook"


@dataclass
class ExampleAgents:
    """A stand-in for batch agents' downgrade effect (app/batch/downgrade.py): each user
    has `agents` enabled agents; a plan with fewer disables the newest, deleting none."""

    agents: int = 5
    enforced: list[tuple[uuid.UUID, str]] = field(default_factory=list)
    disabled: dict[uuid.UUID, int] = field(default_factory=dict)

    async def enforce(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> None:
        self.enforced.append((user_id, limits.tier.value))
        allowed = self.agents if limits.batch_agents is None else limits.batch_agents
        self.disabled[user_id] = max(0, self.agents - allowed)

    async def describe(
        self, *, session: AsyncSession, user_id: uuid.UUID, limits: TierLimits
    ) -> Restriction | None:
        disabled = self.disabled.get(user_id, 0)
        if not disabled:
            return None
        return Restriction(
            kind="batch_agents",
            detail=f"{disabled} agents disabled (newest first): the {limits.tier.value} plan "
            f"allows {limits.batch_agents} enabled",
        )


@dataclass
class Account:
    email: str
    token: str
    user_id: uuid.UUID

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture
def agents() -> ExampleAgents:
    return ExampleAgents()


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_url: str, stripe_fake: FakeStripe
) -> Settings:
    return make_settings(database_url=database_url, **billing_settings(stripe_fake))


@pytest.fixture
async def app(settings: Settings, agents: ExampleAgents) -> AsyncIterator[FastAPI]:
    application = create_app(settings, downgrade_effects=[agents])
    async with application.router.lifespan_context(application):
        yield application


async def register(client: httpx.AsyncClient, email: str | None = None) -> Account:
    email = email or f"{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": PASSWORD}
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    token = response.json()["access_token"]
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    return Account(email=email, token=token, user_id=uuid.UUID(me.json()["id"]))


async def deliver(
    client: httpx.AsyncClient, event: dict[str, Any], *, signature: str | None = None
) -> httpx.Response:
    """POST `event` to the webhook as Stripe does, signed unless `signature` is given."""
    payload = json.dumps(event)
    return await client.post(
        WEBHOOK,
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature if signature is not None else sign(payload),
        },
    )


async def tier_of(client: httpx.AsyncClient, account: Account) -> str:
    response = await client.get("/api/v1/auth/me", headers=account.auth)
    assert response.status_code == 200, response.text
    return str(response.json()["tier"])


async def checkout_session(
    client: httpx.AsyncClient, account: Account, tier: str = "pro", **extra: Any
) -> str:
    """Start a checkout; the fake's session id (the checkout URL's last part)."""
    response = await client.post(
        "/api/v1/billing/checkout", json={"tier": tier, **extra}, headers=account.auth
    )
    assert response.status_code == 200, response.text
    return str(response.json()["checkout_url"]).rsplit("/", 1)[1]


async def paid_checkout(
    client: httpx.AsyncClient,
    stripe: FakeStripe,
    account: Account,
    tier: str = "pro",
    *,
    created: int | None = None,
    **extra: Any,
) -> tuple[dict[str, Any], str]:
    """Check out and pay: Stripe's `checkout.session.completed` (not delivered yet)
    and the new subscription's id."""
    session_id = await checkout_session(client, account, tier, **extra)
    completed = stripe.checkout_completed(session_id, created=created)
    return completed, str(stripe.sessions[session_id]["subscription"])


async def subscribe(
    client: httpx.AsyncClient, stripe: FakeStripe, account: Account, tier: str = "pro", **extra: Any
) -> str:
    """Check out and pay: the subscription's id, once the webhook has applied it."""
    completed, subscription_id = await paid_checkout(client, stripe, account, tier, **extra)
    response = await deliver(client, completed)
    assert response.status_code == 200, response.text
    return subscription_id


async def rows(app: FastAPI, statement: str, **params: object) -> list[tuple[Any, ...]]:
    async with app.state.engine.begin() as conn:
        result = await conn.execute(text(statement), params)
        return [tuple(row) for row in result] if result.returns_rows else []

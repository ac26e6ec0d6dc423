"""Paid installs' money: the 70/30 split, the webhook's side of a sale, authors'
Stripe Connect accounts, their payouts and their earnings per month.

**The split, in whole cents.** The author's share is 70% of the price rounded
to the nearest cent, a half cent going to the author; the platform keeps the
rest. So the two always sum to the price: 99 ¢ → 69 + 30, 55 ¢ → 39 + 16 (38.5
rounds up), 101 ¢ → 71 + 30 (70.7).

**A sale** is settled by Stripe's `payment_intent.succeeded`, delivered to
billing's one webhook, which applies each event exactly once and calls
`PluginSales.payment_settled` inside that event's transaction: the purchase is
marked paid, the plugin installed (counted under its row lock) and one revenue
event recorded (unique per purchase), all with the event id or not at all.

**Payouts** go by Stripe Connect transfers ("separate charges and transfers"):
`pay_out_pending` transfers each revenue event's author share to the author's
connected account, tied to the charge it came from, under an idempotency key
per revenue event, so no share is ever transferred twice. It runs on a schedule
(`app.plugins.scheduled`); shares of authors without an account wait for one.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import User
from app.billing import service as billing_service
from app.billing.events import PaymentOutcome
from app.billing.exceptions import BillingNotConfiguredError, PaymentProviderError
from app.billing.stripe_api import StripeGateway
from app.core.errors import ServiceUnavailableError
from app.core.settings import Settings
from app.plugins.models import (
    PayoutAccount,
    Plugin,
    PluginPurchase,
    PurchaseStatus,
    RevenueEvent,
)
from app.plugins.schemas import EarningsRead, MonthEarnings, PayoutOnboarding
from app.plugins.service import add_install

logger = logging.getLogger(__name__)

AUTHOR_PERCENT = 70
PAYOUTS_PER_PASS = 100


def split(amount_cents: int) -> tuple[int, int]:
    """(author, platform) shares of `amount_cents`: 70% to the author rounded half up,
    the rest to the platform; they always sum to `amount_cents`."""
    author = (amount_cents * AUTHOR_PERCENT + 50) // 100
    return author, amount_cents - author


class PluginSales:
    """The marketplace's payment listener (`app.billing.payments.PaymentListener`)."""

    async def payment_settled(
        self, *, session: AsyncSession, outcome: PaymentOutcome, payer_id: uuid.UUID | None
    ) -> None:
        purchase = await session.scalar(
            select(PluginPurchase)
            .where(PluginPurchase.payment_intent_id == outcome.payment_intent_id)
            .with_for_update()
        )
        if purchase is None or purchase.user_id != payer_id:
            # Not a plugin sale, or an event naming someone else's purchase.
            logger.info("payment intent of no plugin purchase of its payer; ignored")
            return
        if purchase.status != PurchaseStatus.PENDING:
            logger.info("plugin purchase already settled", extra={"status": purchase.status})
            return
        if not outcome.succeeded:
            purchase.status = PurchaseStatus.FAILED.value
            return
        paid = (outcome.amount_received, outcome.currency)
        if paid != (purchase.amount_cents, purchase.currency):
            logger.error(
                "plugin payment does not match its purchase; not installed",
                extra={"purchase_id": str(purchase.id)},
            )
            return
        purchase.status = PurchaseStatus.SUCCEEDED.value
        await add_install(session=session, plugin_id=purchase.plugin_id, user_id=purchase.user_id)
        author_id = await session.scalar(
            select(Plugin.author_id).where(Plugin.id == purchase.plugin_id)
        )
        author_cents, platform_cents = split(purchase.amount_cents)
        await session.execute(
            insert(RevenueEvent)
            .values(
                id=uuid.uuid4(),
                purchase_id=purchase.id,
                plugin_id=purchase.plugin_id,
                author_id=author_id,
                amount_cents=purchase.amount_cents,
                author_cents=author_cents,
                platform_cents=platform_cents,
                currency=purchase.currency,
                charge_id=outcome.charge_id,
            )
            .on_conflict_do_nothing(index_elements=[RevenueEvent.purchase_id])
        )
        logger.info("plugin sold", extra={"purchase_id": str(purchase.id)})


# -- authors' payout accounts and earnings ---------------------------------------------------


def _connect_urls(settings: Settings) -> tuple[str, str]:
    """Where Stripe's onboarding returns the author to, or 503 naming what is missing."""
    named = {
        "STRIPE_SECRET_KEY": settings.stripe_secret_key,
        "STRIPE_CONNECT_RETURN_URL": settings.stripe_connect_return_url,
        "STRIPE_CONNECT_REFRESH_URL": settings.stripe_connect_refresh_url,
    }
    return_url = settings.stripe_connect_return_url
    refresh_url = settings.stripe_connect_refresh_url
    if settings.stripe_secret_key is None or not (return_url and refresh_url):
        raise BillingNotConfiguredError([name for name, value in named.items() if not value])
    return return_url, refresh_url


async def _payout_account(*, session: AsyncSession, user_id: uuid.UUID) -> str | None:
    return await session.scalar(
        select(PayoutAccount.stripe_account_id).where(PayoutAccount.user_id == user_id)
    )


async def start_onboarding(
    *,
    session: AsyncSession,
    settings: Settings,
    gateway: StripeGateway | None,
    user: User,
) -> PayoutOnboarding:
    """The author's Connect account (created and stored the first time) and a link to
    Stripe's onboarding for it; asking again gives a fresh link to the same account."""
    return_url, refresh_url = _connect_urls(settings)
    stripe_gateway = billing_service.require_billing(settings, gateway)
    account_id = await _payout_account(session=session, user_id=user.id)
    await session.commit()  # no connection is held while Stripe is called
    if account_id is None:
        created = await stripe_gateway.create_connected_account(user_id=user.id, email=user.email)
        await session.execute(
            insert(PayoutAccount)
            .values(user_id=user.id, stripe_account_id=created)
            .on_conflict_do_nothing()
        )
        account_id = await _payout_account(session=session, user_id=user.id) or created
        await session.commit()
    url = await stripe_gateway.create_account_link(
        account_id=account_id, refresh_url=refresh_url, return_url=return_url
    )
    return PayoutOnboarding(onboarding_url=url, account_id=account_id)


async def earnings(*, session: AsyncSession, user: User) -> EarningsRead:
    """The author's sales per month (UTC), newest first, and what was transferred."""
    month = func.to_char(func.timezone("UTC", RevenueEvent.created_at), "YYYY-MM")
    transferred = func.coalesce(
        func.sum(RevenueEvent.author_cents).filter(RevenueEvent.transfer_id.is_not(None)), 0
    )
    rows = await session.execute(
        select(
            month.label("month"),
            func.count(),
            func.sum(RevenueEvent.amount_cents),
            func.sum(RevenueEvent.author_cents),
            func.sum(RevenueEvent.platform_cents),
            transferred,
        )
        .where(RevenueEvent.author_id == user.id)
        .group_by(month)
        .order_by(month.desc())
    )
    months = [
        MonthEarnings(
            month=label,
            sales=sales,
            gross_cents=gross,
            author_cents=author,
            platform_cents=platform,
            transferred_cents=paid,
        )
        for label, sales, gross, author, platform, paid in rows
    ]
    return EarningsRead(
        months=months,
        total_author_cents=sum(item.author_cents for item in months),
        payout_account=await _payout_account(session=session, user_id=user.id),
    )


async def pay_out_pending(
    *, session: AsyncSession, gateway: StripeGateway, now: datetime | None = None
) -> int:
    """Transfer authors' shares not transferred yet to their connected accounts; how many.

    Each transfer's idempotency key is its revenue event's id, so a retry after a
    crash (or two instances at once) never transfers a share twice. A failed
    transfer is logged and tried again on the next pass.
    """
    pending = await session.execute(
        select(RevenueEvent, PayoutAccount.stripe_account_id)
        .join(PayoutAccount, PayoutAccount.user_id == RevenueEvent.author_id)
        .where(RevenueEvent.transfer_id.is_(None), RevenueEvent.author_cents > 0)
        .order_by(RevenueEvent.created_at)
        .limit(PAYOUTS_PER_PASS)
    )
    work = [
        (event.id, event.purchase_id, event.author_cents, event.currency, event.charge_id, account)
        for event, account in pending
    ]
    await session.commit()  # no connection is held while Stripe is called
    done = 0
    for event_id, purchase_id, cents, currency, charge_id, account in work:
        try:
            transfer_id = await gateway.create_transfer(
                amount_cents=cents,
                currency=currency,
                destination=account,
                source_transaction=charge_id,
                transfer_group=f"plugin-purchase-{purchase_id}",
                idempotency_key=f"plugin-payout-{event_id}",
            )
        except (PaymentProviderError, ServiceUnavailableError):
            logger.warning("plugin payout failed; retried later", extra={"event": str(event_id)})
            continue
        event = await session.get(RevenueEvent, event_id, with_for_update=True)
        if event is not None and event.transfer_id is None:
            event.transfer_id = transfer_id
            event.transferred_at = now or datetime.now(UTC)
            done += 1
        await session.commit()
    return done

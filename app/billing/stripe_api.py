"""The Stripe API calls billing makes, through the official `stripe` package.

One `StripeGateway` per app (when STRIPE_SECRET_KEY is set), on its own httpx
client pointed at STRIPE_API_BASE. Stripe's failures become this server's:
unreachable → 503 with `Retry-After`, any other failure → 502; the details go
to the log, never to the client. POSTs carry idempotency keys (the library
makes one per call and reuses it on its retries; customers are keyed by the
user's id), so a retried call never creates a second object.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import stripe

from app.billing.exceptions import PaymentProviderError, PaymentProviderUnavailableError
from app.tiers.matrix import Tier

logger = logging.getLogger(__name__)

# Retries of a failed call (connection errors, 409, 5xx), 0.5 s then 1 s apart.
MAX_NETWORK_RETRIES = 2
TIMEOUT_S = 20.0


@contextmanager
def _provider_errors(action: str) -> Iterator[None]:
    """Turn Stripe's exceptions into the answers billing routes give."""
    try:
        yield
    except stripe.APIConnectionError as exc:
        logger.warning("stripe unreachable", extra={"action": action, "error": type(exc).__name__})
        raise PaymentProviderUnavailableError from exc
    except stripe.StripeError as exc:
        logger.error(
            "stripe refused a request",
            extra={
                "action": action,
                "error": type(exc).__name__,
                "http_status": exc.http_status,
                "stripe_code": exc.code,
            },
        )
        raise PaymentProviderError from exc


@dataclass(frozen=True, slots=True)
class PaymentIntent:
    id: str
    client_secret: str


class StripeGateway:
    """Customers, Checkout Sessions, customer portal sessions and subscription
    cancellation at Stripe; for the plugin marketplace, PaymentIntents, Connect
    accounts and their onboarding links, and transfers to them."""

    def __init__(self, *, api_key: str, api_base: str) -> None:
        self._http = stripe.HTTPXClient(timeout=TIMEOUT_S)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            http_client=self._http,
            max_network_retries=MAX_NETWORK_RETRIES,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # untyped in stripe

    async def create_customer(self, *, user_id: uuid.UUID, email: str) -> str:
        """A new Stripe customer for the user; its id.

        The idempotency key is the user's id: two first checkouts at once (or a
        retry) get the one customer Stripe created for the first.
        """
        with _provider_errors("create customer"):
            customer = await self._client.v1.customers.create_async(
                params={"email": email, "metadata": {"user_id": str(user_id)}},
                options={"idempotency_key": f"customer-{user_id}"},
            )
        return customer.id

    async def create_checkout_session(
        self,
        *,
        user_id: uuid.UUID,
        customer_id: str,
        tier: Tier,
        price_id: str,
        seats: int,
        success_url: str,
        cancel_url: str,
    ) -> str:
        """A Checkout Session (subscription mode) for `tier`; the URL to send the user to.

        The user's id and the tier go into the session's and the subscription's
        metadata, so the webhook can tell whose subscription it is.
        """
        metadata = {"user_id": str(user_id), "tier": tier.value, "seats": str(seats)}
        with _provider_errors("create checkout session"):
            checkout = await self._client.v1.checkout.sessions.create_async(
                params={
                    "mode": "subscription",
                    "customer": customer_id,
                    "client_reference_id": str(user_id),
                    "line_items": [{"price": price_id, "quantity": seats}],
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "metadata": metadata,
                    "subscription_data": {"metadata": metadata},
                }
            )
        if not checkout.url:
            logger.error("stripe returned a checkout session without a url")
            raise PaymentProviderError
        return checkout.url

    async def create_portal_session(self, *, customer_id: str, return_url: str) -> str:
        """A customer portal session for the customer; the URL to send the user to.

        What the portal offers (switching among the plans' prices, seat counts,
        cancelling, proration) is its configuration in Stripe's dashboard.
        """
        with _provider_errors("create portal session"):
            portal = await self._client.v1.billing_portal.sessions.create_async(
                params={"customer": customer_id, "return_url": return_url}
            )
        if not portal.url:
            logger.error("stripe returned a portal session without a url")
            raise PaymentProviderError
        return portal.url

    async def cancel_at_period_end(self, *, subscription_id: str) -> None:
        """Ask Stripe to end the subscription when its paid period ends."""
        with _provider_errors("cancel subscription"):
            await self._client.v1.subscriptions.update_async(
                subscription_id,
                params={"cancel_at_period_end": True},
            )

    async def create_payment_intent(
        self,
        *,
        customer_id: str,
        amount_cents: int,
        currency: str,
        description: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> PaymentIntent:
        """A PaymentIntent charging the customer; the desktop confirms it with its
        client secret, and `payment_intent.succeeded` tells the webhook it is paid.

        The same `idempotency_key` (one per purchase) returns the same PaymentIntent.
        """
        with _provider_errors("create payment intent"):
            intent = await self._client.v1.payment_intents.create_async(
                params={
                    "amount": amount_cents,
                    "currency": currency,
                    "customer": customer_id,
                    "description": description,
                    "metadata": dict(metadata),
                    "automatic_payment_methods": {"enabled": True},
                },
                options={"idempotency_key": idempotency_key},
            )
        if not intent.client_secret:
            logger.error("stripe returned a payment intent without a client secret")
            raise PaymentProviderError
        return PaymentIntent(id=intent.id, client_secret=intent.client_secret)

    async def create_connected_account(self, *, user_id: uuid.UUID, email: str) -> str:
        """An Express Connect account for a plugin author (keyed by the user's id: a retry
        or a second request at once gets the same account); its id."""
        with _provider_errors("create connected account"):
            account = await self._client.v1.accounts.create_async(
                params={
                    "type": "express",
                    "email": email,
                    "capabilities": {"transfers": {"requested": True}},
                    "metadata": {"user_id": str(user_id)},
                },
                options={"idempotency_key": f"connect-account-{user_id}"},
            )
        return account.id

    async def create_account_link(
        self, *, account_id: str, refresh_url: str, return_url: str
    ) -> str:
        """Stripe's hosted onboarding for the connected account; the URL to send the author to."""
        with _provider_errors("create account link"):
            link = await self._client.v1.account_links.create_async(
                params={
                    "account": account_id,
                    "refresh_url": refresh_url,
                    "return_url": return_url,
                    "type": "account_onboarding",
                }
            )
        return link.url

    async def create_transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        source_transaction: str | None,
        transfer_group: str,
        idempotency_key: str,
    ) -> str:
        """Move `amount_cents` of the platform's balance to a connected account; its id.

        Tied to the charge it comes from (`source_transaction`), so it waits for that
        charge's funds rather than the platform's available balance.
        """
        params: stripe.params.TransferCreateParams = {
            "amount": amount_cents,
            "currency": currency,
            "destination": destination,
            "transfer_group": transfer_group,
        }
        if source_transaction is not None:
            params["source_transaction"] = source_transaction
        with _provider_errors("create transfer"):
            transfer = await self._client.v1.transfers.create_async(
                params=params, options={"idempotency_key": idempotency_key}
            )
        return transfer.id

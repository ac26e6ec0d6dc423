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
from collections.abc import Iterator
from contextlib import contextmanager

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


class StripeGateway:
    """Customers, Checkout Sessions, customer portal sessions and subscription
    cancellation at Stripe."""

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

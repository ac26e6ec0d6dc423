"""What can go wrong with billing, as the client is told it."""

from __future__ import annotations

from app.core.errors import (
    AppError,
    BadGatewayError,
    ConflictError,
    NotFoundError,
    ServiceUnavailableError,
)

# Stripe being unreachable is usually brief (a network blip, a deploy on their side).
PROVIDER_RETRY_AFTER_S = 5


class BillingNotConfiguredError(ServiceUnavailableError):
    """Billing settings are missing; the detail names them (no Retry-After: waiting won't help)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"Billing is not configured on this server: set {', '.join(missing)}")


class CheckoutRefusedError(AppError):
    status_code = 400
    detail = "This checkout cannot be started"


class AlreadySubscribedError(ConflictError):
    """A checkout while a subscription is live: it would start a second one, billed
    alongside the first. Plan changes go through the customer portal."""

    def __init__(self, tier: str) -> None:
        super().__init__(
            f"You are subscribed to the {tier} plan: change plans through the billing "
            "portal (POST /api/v1/billing/portal), not a new checkout"
        )


class NoBillingAccountError(ConflictError):
    detail = (
        "You have no billing account yet: subscribe through POST /api/v1/billing/checkout first"
    )


class NoSubscriptionError(NotFoundError):
    detail = "You have no active subscription"


class InvalidWebhookError(AppError):
    status_code = 400
    detail = "Invalid webhook"


class PaymentProviderError(BadGatewayError):
    detail = "The payment provider failed to handle the request; try again later"


class PaymentProviderUnavailableError(ServiceUnavailableError):
    detail = "The payment provider cannot be reached; try again shortly"

    def __init__(self) -> None:
        super().__init__(retry_after=PROVIDER_RETRY_AFTER_S)

"""What can go wrong with billing, as the client is told it."""

from __future__ import annotations

from app.core.errors import (
    AppError,
    BadGatewayError,
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

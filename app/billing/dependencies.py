"""The billing domain's dependencies (see `app.core.dependencies`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.billing.stripe_api import StripeGateway
from app.core.dependencies import from_state

# None when STRIPE_SECRET_KEY is unset: the routes that need Stripe then answer 503.
StripeGatewayDep = Annotated[StripeGateway | None, Depends(from_state("stripe_gateway"))]

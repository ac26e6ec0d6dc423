"""What the tier matrix refuses, as the client is told it."""

from __future__ import annotations

from app.core.errors import ForbiddenError


class FeatureNotInPlanError(ForbiddenError):
    detail = "Your plan does not include this feature"

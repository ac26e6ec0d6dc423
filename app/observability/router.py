"""`GET /metrics`: the Prometheus text exposition, behind METRICS_TOKEN when it is set."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.core.dependencies import SettingsDep
from app.core.errors import UnauthorizedError
from app.core.responses import error
from app.observability.metrics import REGISTRY

router = APIRouter(tags=["metrics"])


def _bearer(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials else None


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        **error(401, "METRICS_TOKEN is set and the bearer token is missing or wrong."),
    },
)
async def metrics(request: Request, settings: SettingsDep) -> Response:
    """The server's metrics for a Prometheus scraper (README, "Metrics")."""
    if settings.metrics_token is not None:
        given = _bearer(request)
        expected = settings.metrics_token.get_secret_value()
        if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
            raise UnauthorizedError(invalid_token=given is not None)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

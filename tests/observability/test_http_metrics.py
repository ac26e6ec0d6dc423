"""HTTP metrics from the request middleware: route templates, and 429s as refusals."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest

from app.core.errors import install_error_handlers
from app.core.logging import RequestContextMiddleware
from app.core.rate_limit import RateLimiter, limiter_storage
from app.core.settings import Settings
from app.observability.metrics import REGISTRY
from app.tiers.rate_limits import limit_user


@dataclass(frozen=True)
class FreePlan:
    tier: str = "free"
    seats: int = 1


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_any_429_counts_as_a_rate_limit_refusal_under_its_route_template(
    make_settings: Callable[..., Settings],
) -> None:
    # The real limiter (issue 11) refusing a free user past RATE_LIMIT_FREE.
    settings = make_settings(rate_limit_free=2)
    limiter = RateLimiter(limiter_storage("memory://"))
    user_id = uuid.uuid4()
    app = FastAPI()
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    limited = APIRouter()

    @limited.post("/things/{thing_id}")
    async def limited_thing(thing_id: str) -> None:
        await limit_user(limiter=limiter, settings=settings, user_id=user_id, plan=FreePlan())

    api.include_router(limited)
    app.include_router(api)
    app.add_middleware(RequestContextMiddleware)
    route = {"route": "/api/v1/things/{thing_id}", "method": "POST", "status": "429"}
    before = sample("adiuva_rate_limited_total", transport="http")
    requests_before = sample("adiuva_http_requests_total", **route)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        responses = [await c.post(f"/api/v1/things/secret-{n}") for n in range(4)]

    assert [r.status_code for r in responses] == [200, 200, 429, 429]
    assert "Retry-After" in responses[2].headers
    assert sample("adiuva_rate_limited_total", transport="http") == before + 2
    assert sample("adiuva_http_requests_total", **route) == requests_before + 2
    assert b"secret-" not in generate_latest(REGISTRY)

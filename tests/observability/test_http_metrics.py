"""HTTP metrics from the request middleware: route templates, and 429s as refusals."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest

from app.core.errors import TooManyRequestsError, install_error_handlers
from app.core.logging import RequestContextMiddleware
from app.observability.metrics import REGISTRY


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_any_429_counts_as_a_rate_limit_refusal_under_its_route_template() -> None:
    app = FastAPI()
    install_error_handlers(app)
    api = APIRouter(prefix="/api/v1")
    limited = APIRouter()

    @limited.post("/things/{thing_id}")
    async def refuse(thing_id: str) -> None:
        raise TooManyRequestsError(retry_after=3)

    api.include_router(limited)
    app.include_router(api)
    app.add_middleware(RequestContextMiddleware)
    route = {"route": "/api/v1/things/{thing_id}", "method": "POST", "status": "429"}
    before = sample("adiuva_rate_limited_total", transport="http")
    requests_before = sample("adiuva_http_requests_total", **route)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        responses = [await c.post(f"/api/v1/things/secret-{n}") for n in range(2)]

    assert [r.status_code for r in responses] == [429, 429]
    assert sample("adiuva_rate_limited_total", transport="http") == before + 2
    assert sample("adiuva_http_requests_total", **route) == requests_before + 2
    assert b"secret-" not in generate_latest(REGISTRY)

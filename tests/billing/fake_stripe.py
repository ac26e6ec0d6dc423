"""A fake Stripe API on loopback that speaks Stripe's wire format, and Stripe-signed webhooks.

The server under test talks to it with the real `stripe` package (STRIPE_API_BASE
points here): form-encoded requests with bracketed keys (`metadata[user_id]=…`,
`line_items[0][price]=…`), bearer API keys, `Idempotency-Key` replays, JSON
objects (`{"id": "cus_…", "object": "customer", …}`) and Stripe's error JSON
(`{"error": {"type": "invalid_request_error", "code": "resource_missing", …}}`).

Endpoints: `POST /v1/customers`, `POST /v1/checkout/sessions`, `POST
/v1/billing_portal/sessions`, `GET` and `POST /v1/subscriptions/{id}`. Tests
script failures (`fail_next`) and build the events Stripe would send from the
fake's own objects (`checkout_completed`, `subscription_event` — also what a plan
change in the customer portal sends —, `invoice_event`), signed by `sign`
exactly as Stripe signs:
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.

Runs with uvicorn inside the test's event loop (`tests.loopback.serve_on_loopback`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.loopback import serve_on_loopback

API_KEY = "sk_test_fake_0123456789"
WEBHOOK_SECRET = "whsec_test_fake_0123456789"
PRICES = {"pro": "price_pro_test", "power": "price_power_test", "team": "price_team_test"}
MONTH_S = 30 * 24 * 3600

Json = dict[str, Any]


def sign(payload: str, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends with `payload`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def decode_form(body: str) -> Json:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: Json = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        *parents, last = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    result = _lists_from_index_dicts(root)
    assert isinstance(result, dict)
    return result


def _lists_from_index_dicts(node: Any) -> Any:
    """`{"0": a, "1": b}` (how list items arrive) as `[a, b]`, all the way down."""
    if not isinstance(node, dict):
        return node
    converted = {key: _lists_from_index_dicts(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _error(
    status: int, kind: str, message: str, *, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body: Json = {"error": {"type": kind, "message": message}}
    if code:
        body["error"]["code"] = code
    if param:
        body["error"]["param"] = param
    return JSONResponse(body, status_code=status, headers={"Request-Id": "req_fake"})


@dataclass
class Recorded:
    method: str
    path: str
    params: Json
    idempotency_key: str | None


@dataclass
class _Failure:
    path: str
    status: int
    times: int


@dataclass
class FakeStripe:
    """Stripe's state as the fake holds it; tests read it and script it."""

    api_base: str = ""
    customers: dict[str, Json] = field(default_factory=dict)
    sessions: dict[str, Json] = field(default_factory=dict)
    subscriptions: dict[str, Json] = field(default_factory=dict)
    portal_sessions: dict[str, Json] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _replies: dict[str, tuple[int, Json]] = field(default_factory=dict)
    _in_flight: set[str] = field(default_factory=set)
    _failures: list[_Failure] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- scripting ----------------------------------------------------------------------

    def fail_next(self, path: str, *, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests to `path` with a Stripe `api_error`."""
        self._failures.append(_Failure(path, status, times))

    def calls(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}{secrets.token_hex(6)}"

    # -- the API ------------------------------------------------------------------------

    def build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def stripe_rules(request: Request, call_next: Any) -> Any:
            if request.headers.get("authorization") != f"Bearer {API_KEY}":
                return _error(401, "invalid_request_error", "Invalid API Key provided")
            body = (await request.body()).decode()
            key = request.headers.get("idempotency-key")
            self.requests.append(Recorded(request.method, request.url.path, decode_form(body), key))
            for failure in self._failures:
                if failure.path == request.url.path and failure.times > 0:
                    failure.times -= 1
                    return _error(failure.status, "api_error", "Something went wrong on Stripe")
            if key is None:
                return await call_next(request)
            if key in self._replies:
                status, reply = self._replies[key]
                return JSONResponse(reply, status, headers={"Idempotent-Replayed": "true"})
            if key in self._in_flight:
                # What Stripe answers while the first request with this key still runs.
                return _error(
                    409,
                    "idempotency_error",
                    "There is currently another in-progress request using this Idempotent Key",
                    code="idempotency_key_in_use",
                )
            self._in_flight.add(key)
            try:
                response = await call_next(request)
                raw = b"".join([chunk async for chunk in response.body_iterator])
            finally:
                self._in_flight.discard(key)
            self._replies[key] = (response.status_code, json.loads(raw))
            return JSONResponse(json.loads(raw), response.status_code)

        @app.post("/v1/customers")
        async def create_customer(request: Request) -> JSONResponse:
            params = decode_form((await request.body()).decode())
            customer = {
                "id": self._new_id("cus"),
                "object": "customer",
                "created": int(time.time()),
                "email": params.get("email"),
                "metadata": params.get("metadata", {}),
                "livemode": False,
            }
            self.customers[customer["id"]] = customer
            return JSONResponse(customer)

        @app.post("/v1/checkout/sessions")
        async def create_session(request: Request) -> JSONResponse:
            params = decode_form((await request.body()).decode())
            for required in ("mode", "success_url", "cancel_url", "line_items"):
                if required not in params:
                    return _error(
                        400, "invalid_request_error", f"Missing required param: {required}."
                    )
            if params.get("customer") not in self.customers:
                return _error(
                    400,
                    "invalid_request_error",
                    f"No such customer: '{params.get('customer')}'",
                    code="resource_missing",
                )
            item = params["line_items"][0]
            if item.get("price") not in PRICES.values():
                return _error(
                    400,
                    "invalid_request_error",
                    f"No such price: '{item.get('price')}'",
                    code="resource_missing",
                )
            session_id = self._new_id("cs_test")
            checkout = {
                "id": session_id,
                "object": "checkout.session",
                "created": int(time.time()),
                "mode": params["mode"],
                "customer": params["customer"],
                "client_reference_id": params.get("client_reference_id"),
                "metadata": params.get("metadata", {}),
                "subscription_data": params.get("subscription_data", {}),
                "line_items": params["line_items"],
                "success_url": params["success_url"],
                "cancel_url": params["cancel_url"],
                "status": "open",
                "payment_status": "unpaid",
                "subscription": None,
                "url": f"https://checkout.stripe.com/c/pay/{session_id}",
                "livemode": False,
            }
            self.sessions[session_id] = checkout
            public = {k: v for k, v in checkout.items() if k not in {"line_items"}}
            public.pop("subscription_data")
            return JSONResponse(public)

        @app.post("/v1/billing_portal/sessions")
        async def create_portal_session(request: Request) -> JSONResponse:
            params = decode_form((await request.body()).decode())
            if "customer" not in params:
                return _error(
                    400,
                    "invalid_request_error",
                    "Missing required param: customer.",
                    code="parameter_missing",
                    param="customer",
                )
            if params["customer"] not in self.customers:
                return _error(
                    400,
                    "invalid_request_error",
                    f"No such customer: '{params['customer']}'",
                    code="resource_missing",
                    param="customer",
                )
            session_id = self._new_id("bps")
            portal = {
                "id": session_id,
                "object": "billing_portal.session",
                "configuration": "bpc_fake_default",
                "created": int(time.time()),
                "customer": params["customer"],
                "flow": None,
                "livemode": False,
                "locale": params.get("locale"),
                "on_behalf_of": None,
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.com/p/session/test_{session_id}",
            }
            self.portal_sessions[session_id] = portal
            return JSONResponse(portal)

        @app.get("/v1/subscriptions/{subscription_id}")
        async def retrieve_subscription(subscription_id: str) -> JSONResponse:
            if subscription_id not in self.subscriptions:
                return self._no_such_subscription(subscription_id)
            return JSONResponse(self.subscriptions[subscription_id])

        @app.post("/v1/subscriptions/{subscription_id}")
        async def update_subscription(subscription_id: str, request: Request) -> JSONResponse:
            if subscription_id not in self.subscriptions:
                return self._no_such_subscription(subscription_id)
            params = decode_form((await request.body()).decode())
            subscription = self.subscriptions[subscription_id]
            if "cancel_at_period_end" in params:
                subscription["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
            return JSONResponse(subscription)

        return app

    @staticmethod
    def _no_such_subscription(subscription_id: str) -> JSONResponse:
        return _error(
            404,
            "invalid_request_error",
            f"No such subscription: '{subscription_id}'",
            code="resource_missing",
        )

    # -- what Stripe would send ---------------------------------------------------------

    def _event(self, event_type: str, obj: Json, created: int | None) -> Json:
        return {
            "id": self._new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": int(time.time()) if created is None else created,
            "type": event_type,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "data": {"object": obj},
        }

    def checkout_completed(
        self, session_id: str, *, created: int | None = None, paid: bool = True
    ) -> Json:
        """The customer paid: the session completes and its subscription starts."""
        checkout = self.sessions[session_id]
        item = checkout["line_items"][0]
        now = int(time.time())
        subscription_id = self._new_id("sub")
        self.subscriptions[subscription_id] = {
            "id": subscription_id,
            "object": "subscription",
            "created": now,
            "customer": checkout["customer"],
            "status": "active" if paid else "incomplete",
            "cancel_at_period_end": False,
            "metadata": checkout["subscription_data"].get("metadata", {}),
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": self._new_id("si"),
                        "object": "subscription_item",
                        "price": {"id": item["price"], "object": "price"},
                        "quantity": int(item.get("quantity", 1)),
                        "current_period_start": now,
                        "current_period_end": now + MONTH_S,
                    }
                ],
            },
            "livemode": False,
        }
        checkout.update(
            status="complete",
            payment_status="paid" if paid else "unpaid",
            subscription=subscription_id,
        )
        public = {k: v for k, v in checkout.items() if k not in {"line_items", "subscription_data"}}
        return self._event("checkout.session.completed", public, created)

    def subscription_event(
        self, subscription_id: str, event_type: str, *, created: int | None = None, **changes: Any
    ) -> Json:
        """`customer.subscription.<event_type>` after applying `changes` (`status`, …).

        `period_end` moves the item's current period end; `price` and `quantity` change
        the item as a plan or seat change in the customer portal does (the metadata
        checkout wrote stays as it was).
        """
        subscription = self.subscriptions[subscription_id]
        item = subscription["items"]["data"][0]
        if "period_end" in changes:
            item["current_period_end"] = changes.pop("period_end")
        if "price" in changes:
            item["price"] = {"id": changes.pop("price"), "object": "price"}
        if "quantity" in changes:
            item["quantity"] = changes.pop("quantity")
        subscription.update(changes)
        if event_type == "deleted":
            subscription["status"] = "canceled"
        return self._event(
            f"customer.subscription.{event_type}", json.loads(json.dumps(subscription)), created
        )

    def invoice_event(
        self, subscription_id: str, *, paid: bool, created: int | None = None
    ) -> Json:
        """`invoice.paid` or `invoice.payment_failed` for the subscription's latest invoice."""
        subscription = self.subscriptions[subscription_id]
        invoice = {
            "id": self._new_id("in"),
            "object": "invoice",
            "customer": subscription["customer"],
            "status": "paid" if paid else "open",
            "attempt_count": 1,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": subscription_id, "metadata": {}},
            },
        }
        return self._event("invoice.paid" if paid else "invoice.payment_failed", invoice, created)


@asynccontextmanager
async def fake_stripe() -> AsyncIterator[FakeStripe]:
    """Serve a `FakeStripe` on 127.0.0.1 (a random port) until the block ends."""
    fake = FakeStripe()
    async with serve_on_loopback(fake.build_app()) as port:
        fake.api_base = f"http://127.0.0.1:{port}"
        yield fake


def billing_settings(fake: FakeStripe) -> dict[str, Any]:
    """Settings that point billing at `fake`."""
    return {
        "stripe_secret_key": API_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_price_pro": PRICES["pro"],
        "stripe_price_power": PRICES["power"],
        "stripe_price_team": PRICES["team"],
        "billing_success_url": "app://billing/success",
        "billing_cancel_url": "app://billing/cancel",
        "billing_portal_return_url": "app://billing/portal-return",
        "stripe_api_base": fake.api_base,
    }

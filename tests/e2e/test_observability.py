"""`/metrics` and OpenTelemetry traces, seen from outside after real turns."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from app.core.settings import Settings
from tests.e2e.conftest import Live, running, script
from tests.e2e.otlp_collector import otlp_collector
from tests.llm.scripted_openai import scripted_llm

METRICS_TOKEN = "a-scrape-token"
MESSAGE = "list my tasks about the Zanzibar merger"

FAMILIES = [
    "adiuva_http_requests_total",
    "adiuva_http_request_duration_seconds_bucket",
    "adiuva_device_connections",
    "adiuva_frames_received_total",
    "adiuva_frames_sent_total",
    "adiuva_error_frames_total",
    "adiuva_tool_calls_total",
    "adiuva_tool_call_duration_seconds_bucket",
    "adiuva_turns_total",
    "adiuva_turn_duration_seconds_bucket",
    "adiuva_turn_first_token_seconds_bucket",
    "adiuva_model_calls_total",
    "adiuva_model_tokens_total",
    "adiuva_model_cost_usd_total",
    "adiuva_batch_runs_total",
    "adiuva_batch_scheduler_lag_seconds",
    "adiuva_rate_limited_total",
]


async def scrape(live: Live, token: str | None = METRICS_TOKEN) -> httpx.Response:
    return await live.get("/metrics", token)


def sample(exposition: str, name: str, **labels: str) -> float:
    """The value of one sample (0 when it is not there)."""
    for line in exposition.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{key}="{value}"' in line for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize("live_settings", [{"metrics_token": METRICS_TOKEN}])
async def test_metrics_after_a_turn_expose_every_family_with_bounded_labels(
    assistant: Live,
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan(MESSAGE, agent="task_agent", tool="list_tasks", args={})
    before = (await scrape(assistant)).text

    await client.chat(MESSAGE)
    await assistant.delete(f"/api/v1/memory/core/{uuid.uuid4().hex}", account.token)
    after = (await scrape(assistant)).text

    for family in FAMILIES:
        assert f"# TYPE {family.removesuffix('_bucket')} " in after, family
    assert sample(after, "adiuva_turns_total", kind="home") == 1 + sample(
        before, "adiuva_turns_total", kind="home"
    )
    assert sample(after, "adiuva_turn_duration_seconds_count", kind="home") >= 1
    assert sample(after, "adiuva_turn_first_token_seconds_count", kind="home") >= 1
    for role in ("supervisor", "task_agent"):
        assert sample(after, "adiuva_model_calls_total", role=role, outcome="ok") >= 2
        assert sample(after, "adiuva_model_tokens_total", role=role, kind="prompt") > 0
    assert sample(after, "adiuva_tool_calls_total", action="select", outcome="ok") >= 1
    assert sample(after, "adiuva_frames_received_total", type="home_request") >= 1
    assert sample(after, "adiuva_frames_sent_total", type="stream_end") >= 1
    assert sample(after, "adiuva_device_connections") >= 1
    # Route templates, never raw paths; no user, e-mail or text in any label.
    # The registry is the process's: other tests' requests count too, so the change.
    forgotten = {"route": "/api/v1/memory/core/{key}", "status": "404"}
    assert sample(after, "adiuva_http_requests_total", **forgotten) == 1 + sample(
        before, "adiuva_http_requests_total", **forgotten
    )
    assert sample(after, "adiuva_http_requests_total", route="/api/v1/auth/me", status="200") >= 1
    for leaked in ("Zanzibar", "merger", account.email, str(account.user_id), "/core/"):
        labels = " ".join(re.findall(r"\{[^}]*\}", after))
        assert leaked not in labels.replace("/core/{key}", ""), leaked


@pytest.mark.parametrize("live_settings", [{"metrics_token": METRICS_TOKEN}])
@pytest.mark.parametrize("token", [None, "wrong-token", METRICS_TOKEN + "x", ""])
async def test_metrics_refuse_a_missing_or_wrong_token(live: Live, token: str | None) -> None:
    response = await scrape(live, token)

    assert response.status_code == 401
    assert "adiuva_" not in response.text


async def test_metrics_are_open_when_no_token_is_set(live: Live) -> None:
    response = await scrape(live, None)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize("live_settings", [{"rate_limit_free": 1}])
async def test_a_chat_request_over_the_users_limit_is_a_refusal_not_a_turn(live: Live) -> None:
    account = await live.account()  # its /auth/me is the one request allowed
    client = await live.desktop(account)
    before = (await scrape(live, None)).text

    refused = await client.chat(script(say="hi"), request_id="over")
    after = (await scrape(live, None)).text

    assert refused.types == ["error", "stream_end"]
    assert refused.errors[0]["code"] == "rate_limited"
    for name, labels in [
        ("adiuva_rate_limited_total", {"transport": "device"}),
        ("adiuva_error_frames_total", {"code": "rate_limited"}),
        ("adiuva_turns_total", {"kind": "home"}),
    ]:
        grown = sample(after, name, **labels) - sample(before, name, **labels)
        assert grown == (0 if name == "adiuva_turns_total" else 1), name


@pytest.mark.parametrize("live_settings", [{"ws_messages_per_minute": 3}])
async def test_frames_over_the_rate_limit_are_counted_as_refusals(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account)
    before = (await scrape(live, None)).text

    for n in range(5):
        await client.send_json({"type": "cancel", "request_id": f"r{n}"})
    codes = [(await client.next_frame())["code"] for _ in range(5)]
    after = (await scrape(live, None)).text

    assert codes.count("rate_limited") == 3  # the hello was frame 1 of 3
    refused = sample(after, "adiuva_rate_limited_total", transport="device") - sample(
        before, "adiuva_rate_limited_total", transport="device"
    )
    assert refused == 3
    assert sample(after, "adiuva_error_frames_total", code="rate_limited") >= refused


async def test_spans_of_a_turn_reach_an_otlp_collector_without_message_text(
    assistant_settings: Callable[[str], Settings], tmp_path: Path
) -> None:
    server = Live(base_url="", app=FastAPI(), tmp_path=tmp_path)
    with otlp_collector() as collector:
        async with scripted_llm(server.policy) as llm:
            settings = assistant_settings(llm.api_base).model_copy(
                update={"otel_exporter_otlp_endpoint": collector.endpoint}
            )
            async with running(settings, server):
                account = await server.account()
                client = await server.desktop(account)
                server.policy.plan(MESSAGE, agent="task_agent", tool="list_tasks", args={})
                answer = await client.chat(MESSAGE)
        # The server has stopped: its last spans were flushed on the way out.

    [turn] = collector.named("device chat request")
    assert turn.attributes["adiuva.request_id"] == answer.request_id
    roles = [
        span.attributes["adiuva.role"]
        for span in collector.spans
        if "adiuva.role" in span.attributes
    ]
    assert sorted(roles) == ["supervisor", "supervisor", "task_agent", "task_agent"]
    [tool] = collector.named("tool_call")
    assert tool.attributes["adiuva.tool.action"] == "select"
    assert any(span.name.startswith("GET /api/v1/auth/me") for span in collector.spans)
    assert any(
        "db.statement" in span.attributes or "db.query.text" in span.attributes
        for span in collector.spans
    )
    everything = json.dumps([(s.name, s.attributes) for s in collector.spans], default=str)
    assert "Zanzibar" not in everything
    assert "token=" not in everything  # the device socket's URL is not traced

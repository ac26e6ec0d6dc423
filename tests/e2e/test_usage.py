"""Usage and cost accounting end to end: real server, real LiteLLM, scripted model on loopback."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import litellm
import pytest
from sqlalchemy import text

from app.core.logging import RequestIdFilter
from devclient.client import DeviceClient
from tests.e2e.conftest import Live, UnansweredToolCalls
from tests.llm.scripted_openai import ChatRequest, ErrorReply, ReplyLike

PRICED_MODEL = "openai/gpt-4o-mini"  # in LiteLLM's bundled cost map
SECRET_WORDS = "list my tasks about the Zanzibar merger"


def seed(client: DeviceClient, table: str, **data: Any) -> dict[str, Any]:
    row: dict[str, Any] = client.store.execute(action="insert", table=table, data=data)["row"]
    return row


async def usage_rows(live: Live, user_id: uuid.UUID) -> list[dict[str, Any]]:
    await live.app.state.usage_recorder.flush()
    async with live.app.state.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM model_usage WHERE user_id = :user ORDER BY id"), {"user": user_id}
        )
        return [dict(row) for row in result.mappings()]


def gpt_4o_mini_cost(prompt: int, completion: int) -> float:
    prices = litellm.model_cost["gpt-4o-mini"]
    return float(
        prompt * prices["input_cost_per_token"] + completion * prices["output_cost_per_token"]
    )


@pytest.mark.parametrize("live_settings", [{"llm_model": PRICED_MODEL}])
async def test_a_turn_stores_one_row_per_model_call_and_stream_end_sums_them(
    assistant: Live,
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    seed(client, "tasks", title="Zanzibar merger memo")
    assistant.policy.plan(SECRET_WORDS, agent="task_agent", tool="list_tasks", args={})

    answer = await client.chat(SECRET_WORDS)

    rows = await usage_rows(assistant, account.user_id)
    assert [row["role"] for row in rows] == ["supervisor", "task_agent", "task_agent", "supervisor"]
    assert {row["request_id"] for row in rows} == {answer.request_id}
    assert {row["model"] for row in rows} == {PRICED_MODEL}
    sent = assistant.llm.prompt_tokens  # type: ignore[union-attr]
    assert [row["prompt_tokens"] for row in rows] == sent
    assert all(row["completion_tokens"] > 0 for row in rows)
    for row in rows:
        expected = gpt_4o_mini_cost(row["prompt_tokens"], row["completion_tokens"])
        assert float(row["cost_usd"]) == pytest.approx(expected, rel=1e-6)
        assert float(row["cost_usd"]) > 0

    usage = answer.frames[-1]["usage"]
    assert usage["model_calls"] == 4
    assert usage["prompt_tokens"] == sum(sent)
    assert usage["completion_tokens"] == sum(row["completion_tokens"] for row in rows)
    assert usage["cost_usd"] == pytest.approx(sum(float(row["cost_usd"]) for row in rows))
    assert 0 < usage["first_token_ms"] <= usage["duration_ms"]
    # Counts and names only: nothing the user or the model said is stored.
    stored = json.dumps(rows, default=str)
    for word in ("Zanzibar", "merger", "tasks about", answer.text[:20]):
        assert word not in stored


@pytest.mark.parametrize(
    "live_settings",
    [{"embedding_model": "openai/text-embedding-3-small", "embedding_dim": 1536}],
)
async def test_embeddings_are_accounted_to_the_turn_and_to_the_embed_route(
    assistant: Live,
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)

    answer = await client.chat("hello")
    response = await assistant.post(
        "/api/v1/storage/vectors/embed", account.token, {"text": "a note to index"}
    )

    assert response.status_code == 200
    rows = await usage_rows(assistant, account.user_id)
    embeddings = [row for row in rows if row["role"] == "embedding"]
    assert [row["request_id"] for row in embeddings] == [
        answer.request_id,  # memory recall for the turn's message
        response.headers["x-request-id"],
    ]
    assert all(row["model"] == "openai/text-embedding-3-small" for row in embeddings)
    assert all(row["prompt_tokens"] > 0 and float(row["cost_usd"]) > 0 for row in embeddings)
    assert answer.frames[-1]["usage"]["model_calls"] == 2  # recall + the supervisor's answer


async def test_rest_chat_answer_carries_its_usage(assistant: Live) -> None:
    account = await assistant.account()
    await assistant.desktop(account)
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})

    response = await assistant.post("/api/v1/chat", account.token, {"message": "list my tasks"})

    usage = response.json()["usage"]
    rows = await usage_rows(assistant, account.user_id)
    assert usage["model_calls"] == len(rows) == 4
    assert usage["prompt_tokens"] == sum(row["prompt_tokens"] for row in rows)
    assert usage["first_token_ms"] == usage["duration_ms"] > 0
    assert {row["request_id"] for row in rows} == {rows[0]["request_id"]}
    assert rows[0]["request_id"].startswith("rest-")


async def test_usage_endpoint_shows_only_the_users_own_calls_per_day_and_role(
    assistant: Live,
) -> None:
    alice, bob = await assistant.account(), await assistant.account()
    client = await assistant.desktop(alice)
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})
    await client.chat("list my tasks")
    await usage_rows(assistant, alice.user_id)

    mine = (await assistant.get("/api/v1/usage", alice.token)).json()
    theirs = (await assistant.get("/api/v1/usage", bob.token)).json()

    [day] = mine["days"]
    by_role = {(r["role"], r["model"]): r["model_calls"] for r in day["roles"]}
    assert by_role == {("supervisor", "openai/scripted"): 2, ("task_agent", "openai/scripted"): 2}
    assert mine["total"]["model_calls"] == day["total"]["model_calls"] == 4
    assert mine["total"]["cost_usd"] == 0  # an unknown (local) model costs nothing
    assert theirs["days"] == []
    assert theirs["total"]["model_calls"] == 0


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("?from=2026-11-10&to=2026-11-01", 400),  # inverted
        ("?from=2020-01-01&to=2026-11-01", 400),  # longer than 366 days
        ("?from=yesterday", 422),
        ("?to=0", 422),  # not taken for a Unix time
        ("?to=2026-02-30", 400),  # the right shape, no such day
    ],
)
async def test_usage_endpoint_refuses_bad_ranges(live: Live, query: str, status: int) -> None:
    account = await live.account()

    response = await live.get(f"/api/v1/usage{query}", account.token)

    assert response.status_code == status


async def test_usage_endpoint_needs_a_login(live: Live) -> None:
    assert (await live.get("/api/v1/usage")).status_code == 401


async def test_a_cancelled_turn_still_stores_the_calls_it_made(assistant: Live) -> None:
    unanswered = UnansweredToolCalls()
    account = await assistant.account()
    client = await assistant.desktop(account, on_tool_call=unanswered)
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})
    request_id = await client.start_request({"type": "home_request", "message": "list my tasks"})
    await unanswered.first()

    await client.cancel(request_id)
    result = await client.result(request_id, timeout_s=10)

    rows = await usage_rows(assistant, account.user_id)
    # The supervisor delegated, the sub-agent asked for the tool; then the cancel came.
    assert [row["role"] for row in rows] == ["supervisor", "task_agent"]
    assert result.frames[-1]["usage"]["model_calls"] == 2


async def test_a_model_failure_mid_turn_keeps_the_calls_before_it(
    assistant: Live, caplog: pytest.LogCaptureFixture
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan("list my tasks", agent="task_agent", tool="list_tasks", args={})
    supervisor = assistant.policy

    def fail_sub_agents(request: ChatRequest) -> ReplyLike:
        return supervisor(request) if "task" in request.tool_names else ErrorReply(500)

    assistant.llm.policy = fail_sub_agents  # type: ignore[union-attr]
    caplog.handler.addFilter(RequestIdFilter())

    with caplog.at_level(logging.WARNING, logger="app.chat.service"):
        answer = await client.chat("list my tasks")

    assert answer.types[-2:] == ["error", "stream_end"]
    assert answer.frames[-1]["usage"]["model_calls"] == 1
    rows = await usage_rows(assistant, account.user_id)
    assert [row["role"] for row in rows] == ["supervisor"]
    # Log lines written inside the request carry its request id.
    [failed] = [r for r in caplog.records if r.getMessage() == "model call failed"]
    assert getattr(failed, "request_id", None) == answer.request_id

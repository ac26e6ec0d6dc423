"""Chat requests on the device socket count against the user's per-minute limit."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tests.e2e.conftest import Live, script

SELECT_TASKS = {"action": "select", "table": "tasks"}


@pytest.mark.parametrize("live_settings", [{"rate_limit_free": 4}])
async def test_past_the_limit_a_request_gets_rate_limited_then_stream_end(live: Live) -> None:
    account = await live.account()  # its /auth/me is the first of the 4
    client = await live.desktop(account)

    answered = [await client.chat(script(say="hi")) for _ in range(3)]
    refused = await client.chat(script(say="hi"), request_id="over")
    rest = await live.get("/api/v1/auth/me", account.token)

    assert [a.types for a in answered] == [["stream_start", "stream_text", "stream_end"]] * 3
    assert refused.types == ["error", "stream_end"]
    (error,) = refused.errors
    assert (error["code"], error["request_id"]) == ("rate_limited", "over")
    assert error["message"] == "Rate limit exceeded: the free plan allows 4 requests per minute"
    assert 0 < error["retry_after"] <= 60
    assert refused.frames[-1]["mutations"] == []
    # No model call was made for it: its usage is all zero (protocol 1.3).
    usage = refused.frames[-1]["usage"]
    assert (usage["model_calls"], usage["prompt_tokens"], usage["cost_usd"]) == (0, 0, 0)
    # REST and the socket share the user's one limit.
    assert rest.status_code == 429


@pytest.mark.parametrize("live_settings", [{"rate_limit_free": 3}])
async def test_tool_results_pings_and_batch_frames_are_not_counted(live: Live) -> None:
    account = await live.account()  # 1 of 3
    client = await live.desktop(account)

    # Five tool calls answered by the desktop: five tool_result frames, one request.
    with_tools = await client.chat(script(*[SELECT_TASKS] * 5))
    for _ in range(10):
        await client.send_json({"type": "ping"})
        assert (await client.next_frame())["type"] == "pong"
    for _ in range(3):
        await client.send_json({"type": "agent_complete", "run_id": "r1", "files_read": 0})
        assert (await client.next_frame())["code"] == "unknown_run"
    second = await client.chat(script(say="still here"))
    third = await client.chat(script(say="over"))

    assert len(with_tools.tool_calls) == 5
    assert with_tools.types[-1] == "stream_end"
    assert not with_tools.errors
    assert second.text == "still here"
    assert [e["code"] for e in third.errors] == ["rate_limited"]


@pytest.mark.parametrize("live_settings", [{"rate_limit_free": 2}])
async def test_an_upgrade_lifts_the_socket_limit_at_once(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account)
    await client.chat(script(say="hi"))
    assert [e["code"] for e in (await client.chat(script(say="hi"))).errors] == ["rate_limited"]

    async with live.app.state.engine.begin() as conn:
        await conn.execute(
            text("UPDATE users SET tier = 'pro' WHERE id = :id"), {"id": account.user_id}
        )
    answer = await client.chat(script(say="pro now"))

    assert answer.text == "pro now"
    assert not answer.errors

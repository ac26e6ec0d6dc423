"""The device WebSocket end to end: the real server on loopback, devclient as the desktop."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI

from app.core import security
from app.core.settings import Settings
from devclient.client import Frame
from tests.e2e.conftest import Live, UnansweredToolCalls, running, script

SELECT_TASKS = {"action": "select", "table": "tasks"}


async def test_bad_or_expired_token_is_refused_with_1008(live: Live) -> None:
    account = await live.account()
    secret = live.app.state.settings.jwt_secret.get_secret_value()
    claims = security.decode_access_token(account.token, secret=secret)
    expired, _ = security.issue_access_token(
        user_id=claims.user_id, session_id=claims.session_id, secret=secret, ttl_s=-1
    )

    for token, reason in (("garbage", "Invalid access token"), (expired, "Access token expired")):
        client = await live.desktop(dataclasses.replace(account, token=token))
        assert await client.wait_closed() == (1008, reason)
    assert live.registry.connection_count == 0


async def test_frames_before_hello_are_refused_then_hello_works(live: Live) -> None:
    client = await live.desktop(await live.account(), send_hello=False)

    await client.send_json({"type": "home_request", "message": script(SELECT_TASKS)})
    error = await client.next_frame()
    await client.hello()
    answer = await client.chat(script(say="hi"))

    assert (error["type"], error["code"]) == ("error", "hello_required")
    assert answer.types == ["stream_start", "stream_text", "stream_end"]


async def test_ping_gets_pong_with_iso_timestamp(live: Live) -> None:
    client = await live.desktop(await live.account())

    await client.send_json({"type": "ping"})
    pong = await client.next_frame()

    assert pong["type"] == "pong"
    assert datetime.fromisoformat(pong["timestamp"]).tzinfo == UTC


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{oops", "invalid_json"),
        ('{"type": "warp_drive"}', "unknown_type"),
        ('{"type": "home_request", "request_id": 7, "message": "x"}', "invalid_frame"),
        ('{"type": "floating_request", "message": "x"}', "invalid_frame"),
    ],
)
async def test_bad_frames_get_error_frames_and_the_connection_stays_open(
    live: Live, raw: str, code: str
) -> None:
    client = await live.desktop(await live.account())

    await client.send_text(raw)
    error = await client.next_frame()
    answer = await client.chat(script(say="still here"))

    assert (error["type"], error["code"]) == ("error", code)
    assert error["message"]
    assert answer.text == "still here"


async def test_oversize_frames_get_an_error_and_huge_ones_close_1009(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account)
    limit = live.app.state.settings.ws_max_frame_bytes

    await client.send_json({"type": "home_request", "message": "x" * (limit + 10)})
    too_large = await client.next_frame()
    assert too_large["code"] == "frame_too_large"
    assert (await client.chat(script(say="ok"))).text == "ok"

    await client.send_text(json.dumps({"type": "ping", "pad": "x" * (limit * 5)}))
    code, _ = await client.wait_closed()

    assert code == 1009
    # The server is unharmed: health and a new connection both work.
    assert (await live.get("/api/v1/health")).status_code == 200
    again = await live.desktop(account, device_id="desk-2")
    assert (await again.chat(script(say="ok"))).text == "ok"


@pytest.mark.parametrize("live_settings", [{"ws_messages_per_minute": 4}])
async def test_rate_limit_answers_with_retry_after(live: Live) -> None:
    client = await live.desktop(await live.account())  # the hello is frame 1

    for n in range(5):
        await client.send_json({"type": "cancel", "request_id": f"r{n}"})
    codes = [(await client.next_frame())["code"] for _ in range(5)]
    await client.send_json({"type": "ping"})
    pong = await client.next_frame()

    assert codes == ["unknown_request"] * 3 + ["rate_limited"] * 2
    assert pong["type"] == "pong"  # heartbeats are never limited


async def test_default_rate_limit_is_100_frames_a_minute(live: Live) -> None:
    client = await live.desktop(await live.account())
    for n in range(100):
        await client.send_json({"type": "cancel", "request_id": f"r{n}"})
    frames = [await client.next_frame() for _ in range(100)]

    limited = [f for f in frames if f["code"] == "rate_limited"]
    assert len(limited) == 1
    assert 0 < limited[0]["retry_after"] <= 60


@pytest.mark.parametrize("live_settings", [{"ws_max_connections_per_user": 2}])
async def test_connections_per_user_are_limited(live: Live) -> None:
    ada, grace = await live.account(), await live.account()
    await live.desktop(ada, "one")
    await live.desktop(ada, "two")

    third = await live.desktop(ada, "three", send_hello=False)
    error = await third.next_frame()
    closed = await third.wait_closed()

    assert (error["code"], error["retry_after"] > 0) == ("too_many_connections", True)
    assert closed[0] == 1013
    assert (await (await live.desktop(grace)).chat(script(say="ok"))).text == "ok"


@pytest.mark.parametrize("live_settings", [{"ws_max_connections": 2}])
async def test_connections_per_server_are_limited(live: Live) -> None:
    await live.desktop(await live.account())
    await live.desktop(await live.account())

    refused = await live.desktop(await live.account(), send_hello=False)

    assert (await refused.next_frame())["code"] == "too_many_connections"
    assert (await refused.wait_closed())[0] == 1013


async def test_tool_call_round_trip_and_frame_order(live: Live) -> None:
    client = await live.desktop(await live.account())
    client.store.execute(action="insert", table="tasks", data={"title": "Invoice ACME"})

    answer = await client.chat(script({**SELECT_TASKS, "filters": {"search": "acme"}}))

    assert answer.types == ["stream_start", "tool_call", "stream_text", "stream_end"]
    call = answer.tool_calls[0]
    assert (call["action"], call["table"], call["filters"]) == (
        "select",
        "tasks",
        {"search": "acme"},
    )
    assert call["request_id"] == answer.request_id
    assert [row["title"] for row in json.loads(answer.text)["rows"]] == ["Invoice ACME"]
    assert answer.mutations == []


async def test_stream_end_lists_the_mutations_the_turn_made(live: Live) -> None:
    client = await live.desktop(await live.account())

    answer = await client.chat(
        script(
            {"action": "insert", "table": "projects", "data": {"name": "Website"}},
            {"action": "select", "table": "projects"},
        )
    )

    [project] = client.store.rows("projects")
    assert answer.mutations == [{"action": "insert", "table": "projects", "data": project}]
    assert "id" in project


async def test_concurrent_requests_on_one_socket_stay_apart(live: Live) -> None:
    client = await live.desktop(await live.account())

    slow, fast = await asyncio.gather(
        client.chat(script(say="slow", sleep=0.3)), client.chat(script(say="fast"))
    )

    assert (slow.text, fast.text) == ("slow", "fast")
    assert slow.request_id != fast.request_id
    assert all(f["request_id"] == slow.request_id for f in slow.frames)


@pytest.mark.parametrize("live_settings", [{"tool_call_timeout_s": 0.3}])
async def test_unanswered_tool_call_times_out_and_stream_still_ends(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account, on_tool_call=UnansweredToolCalls())

    answer = await client.chat(script(SELECT_TASKS, say="done"))

    result = json.loads(answer.text.removesuffix("done"))
    assert result["tool_error"] == "ToolCallTimeoutError"
    assert answer.types[-1] == "stream_end"
    link = live.link(account)
    assert len(link.protocol.pending) == 0
    assert link.protocol.inflight == set()


async def test_disconnect_fails_pending_calls_at_once_and_cleans_up(live: Live) -> None:
    unanswered = UnansweredToolCalls()
    account = await live.account()
    client = await live.desktop(account, on_tool_call=unanswered)
    await client.start_request({"type": "home_request", "message": script(SELECT_TASKS)})
    await unanswered.first()
    link = live.link(account)
    assert len(link.protocol.pending) == 1

    await client.close()
    # Far sooner than the 2 s tool time-out: the disconnect fails the call itself.
    await live.until(lambda: len(link.protocol.pending) == 0, timeout_s=1)

    await live.until(lambda: live.registry.connection_count == 0)
    assert not live.registry.is_online(link.user_id)


async def test_cancel_stops_the_request_which_still_ends(live: Live) -> None:
    unanswered = UnansweredToolCalls()
    account = await live.account()
    client = await live.desktop(account, on_tool_call=unanswered)
    request_id = await client.start_request(
        {
            "type": "home_request",
            "message": script(
                {"action": "insert", "table": "notes", "data": {"title": "x"}}, SELECT_TASKS
            ),
        }
    )
    await unanswered.first()

    await client.cancel(request_id)
    cancelled = await client.result(request_id, timeout_s=5)

    assert cancelled.types == ["stream_start", "tool_call", "stream_end"]
    assert cancelled.mutations == []
    link = live.link(account)
    assert len(link.protocol.pending) == 0
    assert link.protocol.inflight == set()
    client.on_tool_call = None
    assert (await client.chat(script(say="next"))).text == "next"


async def test_two_users_never_see_or_answer_each_others_calls(live: Live) -> None:
    ada_calls: asyncio.Queue[Frame] = asyncio.Queue()
    release = asyncio.Event()

    async def ada_answers_late(call: Frame) -> Frame:
        await ada_calls.put(call)
        await release.wait()
        return {"type": "tool_result", "id": call["id"], "rows": [{"id": "ada-task"}]}

    ada = await live.desktop(await live.account(), on_tool_call=ada_answers_late)
    grace = await live.desktop(await live.account())
    grace.store.execute(action="insert", table="tasks", data={"title": "Grace's task"})

    ada_request = await ada.start_request({"type": "home_request", "message": script(SELECT_TASKS)})
    ada_call = await asyncio.wait_for(ada_calls.get(), 5)
    # Grace tries to answer Ada's call: ignored, Ada's request keeps waiting for Ada.
    await grace.send_json({"type": "tool_result", "id": ada_call["id"], "rows": [{"id": "forged"}]})
    grace_answer = await grace.chat(script(SELECT_TASKS))
    release.set()
    ada_answer = await ada.result(ada_request, timeout_s=5)

    assert json.loads(ada_answer.text)["rows"] == [{"id": "ada-task"}]
    assert [r["title"] for r in json.loads(grace_answer.text)["rows"]] == ["Grace's task"]
    assert {c["request_id"] for c in grace.tool_calls} == {grace_answer.request_id}
    assert {c["request_id"] for c in ada.tool_calls} == {ada_request}


async def test_same_device_reconnecting_replaces_the_old_connection(live: Live) -> None:
    account = await live.account()
    old = await live.desktop(account, "office")
    await old.chat(script(say="first"))  # the hello has been processed

    new = await live.desktop(account, "office")

    assert await old.wait_closed() == (4000, "replaced by a newer connection")
    assert (await new.chat(script(say="second"))).text == "second"
    assert live.registry.connection_count == 1


@pytest.mark.parametrize("live_settings", [{"ws_ping_interval_s": 0.1, "ws_idle_timeout_s": 0.5}])
async def test_heartbeat_pings_and_closes_silent_connections(live: Live) -> None:
    account = await live.account()
    lively = await live.desktop(account, "lively")
    silent = await live.desktop(account, "silent", auto_pong=False)

    ping = await silent.next_frame()
    code, reason = await silent.wait_closed(timeout_s=3)

    assert ping["type"] == "ping"
    assert (code, reason) == (1001, "heartbeat timeout")
    await asyncio.sleep(0.6)
    assert not lively.closed  # answering pings keeps it open
    assert (await lively.chat(script(say="alive"))).text == "alive"


async def test_a_crashing_request_ends_with_error_then_stream_end(live: Live) -> None:
    client = await live.desktop(await live.account())

    answer = await client.chat(script(crash=True))

    assert answer.types == ["stream_start", "error", "stream_end"]
    assert answer.errors[0]["code"] == "internal_error"
    assert "scripted crash" not in json.dumps(answer.frames)


async def test_duplicate_request_is_refused_and_the_running_one_goes_on(live: Live) -> None:
    client = await live.desktop(await live.account())
    first = await client.start_request(
        {"type": "home_request", "request_id": "same", "message": script(say="a", sleep=0.3)}
    )
    frames = client.stream(first)
    assert (await anext(frames))["type"] == "stream_start"

    await client.send_json({"type": "home_request", "request_id": "same", "message": "{}"})
    rest = [frame async for frame in frames]

    assert [f["type"] for f in rest] == ["error", "stream_text", "stream_end"]
    assert rest[0]["code"] == "duplicate_request_id"


async def test_other_code_can_find_a_users_devices(live: Live) -> None:
    account = await live.account()
    await live.desktop(account, "office")
    await live.desktop(account, "laptop")
    user_id = account.user_id

    await live.until(lambda: len(live.registry.devices(user_id)) == 2)

    assert live.registry.is_online(user_id, "office")
    assert live.registry.is_online(user_id, "laptop")
    assert not live.registry.is_online(user_id, "phone")


async def test_without_a_model_chat_ends_with_llm_not_configured(
    make_settings: Callable[..., Settings], database_url: str, tmp_path: Path
) -> None:
    server = Live(base_url="", app=FastAPI(), tmp_path=tmp_path)
    # The server's own chat service, with no LLM_MODEL set.
    async with running(make_settings(database_url=database_url), server):
        client = await server.desktop(await server.account())
        answer = await client.chat("list my tasks")
        floating = await client.floating("summarise", "project", "p1")

    for result in (answer, floating):
        assert result.types == ["error", "stream_end"]
        assert result.errors[0]["code"] == "llm_not_configured"
        assert "LLM_MODEL" in result.errors[0]["message"]
        assert result.errors[0]["request_id"] == result.request_id


@pytest.mark.parametrize("live_settings", [{"ws_ping_interval_s": 0.1}])
async def test_logging_out_ends_the_open_device_connection(live: Live) -> None:
    account = await live.account()
    other_login = await live.account()
    client = await live.desktop(account)
    bystander = await live.desktop(other_login)
    await client.chat(script(say="connected"))

    response = await live.post(
        "/api/v1/auth/logout", None, {"refresh_token": account.refresh_token}
    )

    assert response.status_code == 204
    assert await client.wait_closed(timeout_s=3) == (1008, "Session has ended; log in again")
    await asyncio.sleep(0.3)  # a few heartbeats later
    assert not bystander.closed

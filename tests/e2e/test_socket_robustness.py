"""Hostile and unlucky clients on the real device socket: each ends cleanly."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from devclient.client import device_url
from tests.e2e.conftest import Live, script


async def test_a_cancel_right_behind_its_request_still_ends_it(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account)
    limit = live.app.state.settings.ws_max_inflight_requests

    # More than the in-flight limit: a request whose slot leaked would refuse the rest.
    for n in range(limit + 3):
        request_id = await client.start_request(
            {"type": "home_request", "request_id": f"r{n}", "message": script(sleep=5)}
        )
        await client.cancel(request_id)
        ended = await client.result(request_id, timeout_s=5)
        assert ended.types[-1] == "stream_end"
        assert not ended.errors

    link = live.link(account)
    assert link.protocol.inflight == set()
    assert (await client.chat(script(say="still works"))).text == "still works"


async def test_deeply_nested_json_is_refused_and_the_connection_stays_open(live: Live) -> None:
    client = await live.desktop(await live.account())

    await client.send_text("[" * 1000 + "]" * 1000)
    error = await client.next_frame()

    assert (error["type"], error["code"]) == ("error", "invalid_json")
    assert (await client.chat(script(say="still here"))).text == "still here"


@pytest.mark.parametrize("live_settings", [{"ws_invalid_frames_per_minute": 5}])
async def test_a_client_that_keeps_sending_bad_frames_is_closed_4001(live: Live) -> None:
    account = await live.account()
    client = await live.desktop(account)

    for _ in range(6):
        await client.send_text("not json")
    code, reason = await client.wait_closed()

    assert code == 4001
    assert "invalid frames" in str(reason)
    # Only that connection: the user and the server carry on.
    again = await live.desktop(account, device_id="desk-2")
    assert (await again.chat(script(say="ok"))).text == "ok"


@pytest.mark.parametrize("live_settings", [{"ws_max_frame_bytes": 1024 * 1024}])
async def test_a_huge_answer_reaches_a_client_with_a_1_mib_frame_limit(live: Live) -> None:
    account = await live.account()
    answer_bytes = 3 * 1024 * 1024
    frames: list[dict[str, str]] = []

    # websockets' default max_size is 1 MiB, as in most client libraries.
    async with connect(device_url(live.base_url, account.token)) as websocket:
        await websocket.send(json.dumps({"type": "device_hello", "device_id": "desk"}))
        await websocket.send(
            json.dumps(
                {
                    "type": "home_request",
                    "request_id": "big",
                    "message": script(say="0123456789abcdef", repeat=answer_bytes // 16),
                }
            )
        )
        async with asyncio.timeout(30):
            while not frames or frames[-1]["type"] != "stream_end":
                raw = await websocket.recv()
                assert len(raw.encode() if isinstance(raw, str) else raw) <= 1024 * 1024
                frames.append(json.loads(raw))

    texts = [f["chunk"] for f in frames if f["type"] == "stream_text"]
    assert len(texts) > 1
    assert "".join(texts) == "0123456789abcdef" * (answer_bytes // 16)
    assert {k: v for k, v in frames[-1].items() if k != "usage"} == {
        "type": "stream_end",
        "request_id": "big",
        "mutations": [],
    }

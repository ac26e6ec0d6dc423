"""DeviceClient speaks the device protocol (docs/protocol.md) against a scripted peer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from devclient.client import (
    AuthError,
    DeviceClient,
    DeviceClosedError,
    Frame,
    device_url,
    floating_request,
    home_request,
    login,
    register,
    register_or_login,
    tool_result_payload,
)
from devclient.store import LocalStore
from tests.devclient.scripted_peer import TIMEOUT_S, PeerConnection, ScriptedPeer, scripted_peer

TOKEN = "header.payload.signature"
DEVICE_ID = "device-1"


@pytest.fixture
def store() -> Iterator[LocalStore]:
    local = LocalStore(":memory:")
    yield local
    local.close()


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedPeer]:
    async with scripted_peer() as listening:
        yield listening


async def connect(
    peer: ScriptedPeer, store: LocalStore, **options: Any
) -> tuple[DeviceClient, PeerConnection]:
    """Connect a client and read its hello on the peer side."""
    client = await DeviceClient.connect(
        server=peer.url, token=TOKEN, device_id=DEVICE_ID, store=store, **options
    )
    connection = await peer.accept()
    assert await connection.recv() == {
        "type": "device_hello",
        "device_id": DEVICE_ID,
        "agent_ids": [],
    }
    return client, connection


def insert_task(store: LocalStore, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = store.execute(action="insert", table="tasks", data=fields)["row"]
    return row


# --- connecting and closing ----------------------------------------------------------


async def test_connects_with_token_in_query_and_says_hello_first(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client = await DeviceClient.connect(
        server=peer.url, token=TOKEN, device_id=DEVICE_ID, store=store, agent_ids=["a1"]
    )
    async with client:
        connection = await peer.accept()
        assert connection.path == f"/api/v1/ws/device?token={TOKEN}"
        assert await connection.recv() == {
            "type": "device_hello",
            "device_id": DEVICE_ID,
            "agent_ids": ["a1"],
        }


async def test_without_hello_the_first_frame_is_the_callers(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client = await DeviceClient.connect(
        server=peer.url, token=TOKEN, device_id=DEVICE_ID, store=store, send_hello=False
    )
    async with client:
        connection = await peer.accept()
        await client.send_json({"type": "ping"})
        assert await connection.recv() == {"type": "ping"}


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("http://127.0.0.1:8000", "ws://127.0.0.1:8000/api/v1/ws/device?token=t"),
        ("https://api.example.com/", "wss://api.example.com/api/v1/ws/device?token=t"),
        ("http://host/prefix/", "ws://host/prefix/api/v1/ws/device?token=t"),
        ("ws://host:1", "ws://host:1/api/v1/ws/device?token=t"),
    ],
)
def test_device_url_turns_the_base_url_into_the_websocket_url(server: str, expected: str) -> None:
    assert device_url(server, "t") == expected


def test_device_url_escapes_the_token() -> None:
    assert device_url("http://h", "a b&c").endswith("?token=a+b%26c")


@pytest.mark.parametrize("server", ["127.0.0.1:8000", "ftp://host", "http://"])
def test_device_url_refuses_what_is_not_an_http_base_url(server: str) -> None:
    with pytest.raises(ValueError, match="http"):
        device_url(server, "t")


async def test_records_the_close_code_and_reason(peer: ScriptedPeer, store: LocalStore) -> None:
    client, connection = await connect(peer, store)
    async with client:
        assert client.close_code is None
        assert not client.closed
        await connection.close(4000, "replaced by a newer connection")
        assert await client.wait_closed(TIMEOUT_S) == (4000, "replaced by a newer connection")
        assert client.closed


async def test_a_server_that_closes_at_once_still_gives_a_client(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    connecting = asyncio.create_task(
        DeviceClient.connect(server=peer.url, token="expired", device_id=DEVICE_ID, store=store)
    )
    connection = await peer.accept()
    await connection.close(1008, "Access token expired")
    async with await connecting as client:
        assert await client.wait_closed(TIMEOUT_S) == (1008, "Access token expired")
        with pytest.raises(DeviceClosedError) as closed:
            await client.hello()
        assert closed.value.code == 1008


async def test_a_running_request_fails_with_the_close_code(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        request_id = await client.start_request(home_request("hi"))
        await connection.recv()
        await connection.send({"type": "stream_start", "request_id": request_id})
        await connection.close(1001, "heartbeat timeout")
        with pytest.raises(DeviceClosedError) as closed:
            await client.result(request_id, timeout_s=TIMEOUT_S)
        assert (closed.value.code, closed.value.reason) == (1001, "heartbeat timeout")
        with pytest.raises(DeviceClosedError):
            await client.start_request(home_request("again"))


async def test_general_frames_are_read_before_the_close_is_reported(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        error = {
            "type": "error",
            "code": "too_many_connections",
            "message": "at most 5 connections",
            "retry_after": 30,
        }
        await connection.send(error)
        await connection.close(1013, "try again later")
        await client.wait_closed(TIMEOUT_S)
        assert await client.next_frame(TIMEOUT_S) == error
        with pytest.raises(DeviceClosedError) as closed:
            await client.next_frame(TIMEOUT_S)
        assert closed.value.code == 1013


async def test_close_is_a_normal_closure(peer: ScriptedPeer, store: LocalStore) -> None:
    client, _connection = await connect(peer, store)
    await client.close()
    await client.close()
    assert client.closed
    assert client.close_code == 1000


# --- tool calls and heartbeats ---------------------------------------------------------


async def test_answers_a_select_tool_call_from_the_store(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    todo = insert_task(store, title="Write invoice")
    insert_task(store, title="Ship it", status="done")
    client, connection = await connect(peer, store)
    async with client:
        call = {
            "type": "tool_call",
            "id": "call-1",
            "action": "select",
            "table": "tasks",
            "filters": {"status": "todo"},
            "request_id": "r-1",
        }
        await connection.send(call)
        assert await connection.recv() == {"type": "tool_result", "id": "call-1", "rows": [todo]}
        assert client.tool_calls == [call]


async def test_an_insert_tool_call_writes_the_store(peer: ScriptedPeer, store: LocalStore) -> None:
    client, connection = await connect(peer, store)
    async with client:
        await connection.send(
            {
                "type": "tool_call",
                "id": "call-2",
                "action": "insert",
                "table": "notes",
                "data": {"title": "Kickoff", "content": "# Agenda"},
                "run_id": "run-1",
            }
        )
        result = await connection.recv()
        assert result["row"] == store.rows("notes")[0]
        assert result["row"]["content"] == "# Agenda"


async def test_a_failing_tool_call_is_answered_with_an_error(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        await connection.send({"type": "tool_call", "id": "c", "action": "select", "table": "x"})
        result = await connection.recv()
        assert set(result) == {"type", "id", "error"}
        assert "unknown table" in result["error"]


async def test_answers_a_server_ping_with_pong(peer: ScriptedPeer, store: LocalStore) -> None:
    client, connection = await connect(peer, store)
    async with client:
        await connection.send({"type": "ping", "timestamp": "2026-01-01T00:00:00+00:00"})
        assert await connection.recv() == {"type": "pong"}


async def test_without_auto_pong_pings_reach_the_general_inbox(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store, auto_pong=False)
    async with client:
        await connection.send({"type": "ping"})
        assert await client.next_frame(TIMEOUT_S) == {"type": "ping"}
        await client.send_json({"type": "hello?"})
        assert await connection.recv() == {"type": "hello?"}  # no pong came first


async def test_without_auto_answer_tool_calls_are_only_recorded(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store, auto_answer_tools=False)
    async with client:
        call = {"type": "tool_call", "id": "c", "action": "select", "table": "tasks", "run_id": "r"}
        await connection.send(call)
        await connection.send({"type": "ping"})
        assert await connection.recv() == {"type": "pong"}
        assert await client.next_frame(TIMEOUT_S) == call
        assert client.tool_calls == [call]


async def test_a_hook_may_hold_an_answer_without_blocking_other_frames(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    release = asyncio.Event()

    async def late_answer(call: Frame) -> Frame:
        await release.wait()
        return tool_result_payload(store, call)

    client, connection = await connect(peer, store, on_tool_call=late_answer)
    async with client:
        await connection.send(
            {"type": "tool_call", "id": "slow", "action": "select", "table": "tasks"}
        )
        await connection.send({"type": "ping"})
        assert await connection.recv() == {"type": "pong"}
        release.set()
        assert await connection.recv() == {"type": "tool_result", "id": "slow", "rows": []}


async def test_a_hook_may_answer_anything_or_nothing(peer: ScriptedPeer, store: LocalStore) -> None:
    async def custom(call: Frame) -> Frame | None:
        return None if call["id"] == "ignored" else {"error": "disk full"}

    client, connection = await connect(peer, store, on_tool_call=custom)
    async with client:
        await connection.send({"type": "tool_call", "id": "ignored", "action": "get"})
        await connection.send({"type": "tool_call", "id": "failed", "action": "get"})
        assert await connection.recv() == {
            "type": "tool_result",
            "id": "failed",
            "error": "disk full",
        }
        assert [call["id"] for call in client.tool_calls] == ["ignored", "failed"]


async def test_a_failing_hook_is_logged_and_sends_nothing(
    peer: ScriptedPeer, store: LocalStore, caplog: pytest.LogCaptureFixture
) -> None:
    called = asyncio.Event()

    async def broken(call: Frame) -> Frame:
        called.set()
        raise RuntimeError("bug in the test hook")

    client, connection = await connect(peer, store, on_tool_call=broken)
    async with client:
        await connection.send({"type": "tool_call", "id": "c", "action": "get"})
        async with asyncio.timeout(TIMEOUT_S):
            await called.wait()  # resumes after the answering task has logged and returned
        await connection.send({"type": "ping"})
        assert await connection.recv() == {"type": "pong"}
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert record.exc_info is not None
        assert "tool_call c" in record.getMessage()


async def test_frames_that_are_not_protocol_frames_are_recorded(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        await connection.send_raw("not json")
        await connection.send_raw(b"\x00\x01")
        await connection.send_raw("[1, 2]")
        await connection.send({"type": "tool_call", "action": "select", "table": "tasks"})
        await connection.send({"type": "ping"})
        assert await connection.recv() == {"type": "pong"}
        assert len(client.protocol_errors) == 4
        assert "invalid JSON" in client.protocol_errors[0]
        assert "binary message" in client.protocol_errors[1]
        assert "string type" in client.protocol_errors[2]
        assert "without a string id" in client.protocol_errors[3]


async def test_send_text_sends_the_message_unchanged(peer: ScriptedPeer, store: LocalStore) -> None:
    client, connection = await connect(peer, store)
    async with client:
        await client.send_text('{"type": "home_request", ')
        assert await connection.recv_raw() == '{"type": "home_request", '


# --- chat requests ---------------------------------------------------------------------


async def test_chat_collects_the_request_frames_in_order(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        chat = asyncio.create_task(
            client.chat(
                "list my tasks",
                request_id="r-1",
                thread_id="th-1",
                conversation_history=[{"role": "user", "content": "hi"}],
                timeout_s=TIMEOUT_S,
            )
        )
        assert await connection.recv() == {
            "type": "home_request",
            "request_id": "r-1",
            "message": "list my tasks",
            "conversation_history": [{"role": "user", "content": "hi"}],
            "thread_id": "th-1",
        }
        mutation = {"action": "insert", "table": "tasks", "data": {"id": "t1", "title": "A"}}
        await connection.send({"type": "stream_start", "request_id": "r-1"})
        call = {"type": "tool_call", "id": "c1", "action": "select", "table": "tasks"}
        await connection.send({**call, "request_id": "r-1"})
        assert await connection.recv() == {"type": "tool_result", "id": "c1", "rows": []}
        await connection.send({"type": "stream_text", "request_id": "r-1", "chunk": "No "})
        await connection.send({"type": "stream_text", "request_id": "r-1", "chunk": "tasks."})
        await connection.send({"type": "stream_end", "request_id": "r-1", "mutations": [mutation]})
        result = await chat
        assert result.request_id == "r-1"
        assert result.types == [
            "stream_start",
            "tool_call",
            "stream_text",
            "stream_text",
            "stream_end",
        ]
        assert result.text == "No tasks."
        assert result.mutations == [mutation]
        assert result.errors == []
        assert result.tool_calls == [{**call, "request_id": "r-1"}]
        assert result.domain is None
        assert not result.refused


async def test_floating_sends_the_scope_and_records_the_domain(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        floating = asyncio.create_task(
            client.floating("summarise", "project", "p-1", timeout_s=TIMEOUT_S)
        )
        request = await connection.recv()
        request_id = request.pop("request_id")
        assert request == {
            "type": "floating_request",
            "message": "summarise",
            "scope": {"type": "project", "id": "p-1"},
        }
        for frame in (
            {"type": "floating_domain", "domain": "projects"},
            {"type": "stream_start"},
            {"type": "stream_text", "chunk": "On track."},
            {"type": "stream_end", "mutations": []},
        ):
            await connection.send({**frame, "request_id": request_id})
        result = await floating
        assert result.domain == "projects"
        assert result.text == "On track."
        assert result.mutations == []


def test_request_builders_leave_out_absent_fields() -> None:
    assert home_request("hi") == {"type": "home_request", "message": "hi"}
    assert floating_request("hi", "task") == {
        "type": "floating_request",
        "message": "hi",
        "scope": {"type": "task"},
    }


async def test_frames_of_concurrent_requests_are_routed_apart(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        first = await client.start_request(home_request("one"))
        second = await client.start_request(home_request("two"))
        assert first != second
        assert [(await connection.recv())["request_id"] for _ in range(2)] == [first, second]
        interleaved: list[tuple[str, Frame]] = [
            (first, {"type": "stream_start"}),
            (second, {"type": "stream_start"}),
            (second, {"type": "stream_text", "chunk": "B1"}),
            (first, {"type": "stream_text", "chunk": "A1"}),
            (second, {"type": "error", "code": "internal_error", "message": "boom"}),
            (second, {"type": "stream_end", "mutations": []}),
            (first, {"type": "stream_text", "chunk": "A2"}),
            (first, {"type": "stream_end", "mutations": [{"action": "delete"}]}),
        ]
        for request_id, frame in interleaved:
            await connection.send({**frame, "request_id": request_id})
        one = await client.result(first, timeout_s=TIMEOUT_S)
        two = await client.result(second, timeout_s=TIMEOUT_S)
        assert (one.text, one.errors, one.mutations) == ("A1A2", [], [{"action": "delete"}])
        assert (two.text, [e["code"] for e in two.errors]) == ("B1", ["internal_error"])
        assert two.types[-1] == "stream_end"


async def test_a_refused_request_ends_with_its_error(peer: ScriptedPeer, store: LocalStore) -> None:
    client, connection = await connect(peer, store)
    async with client:
        request_id = await client.start_request(home_request("hi"))
        await connection.recv()
        refusal = {
            "type": "error",
            "code": "too_many_requests",
            "message": "at most 4 requests at once",
            "request_id": request_id,
        }
        await connection.send(refusal)
        result = await client.result(request_id, timeout_s=TIMEOUT_S)
        assert result.refused
        assert result.frames == [refusal]
        assert result.mutations == []


async def test_frames_after_the_end_and_of_unknown_requests_go_to_the_general_inbox(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        request_id = await client.start_request(home_request("hi"))
        await connection.recv()
        end = {"type": "stream_end", "request_id": request_id, "mutations": []}
        late = {"type": "stream_text", "request_id": request_id, "chunk": "late"}
        stranger = {"type": "stream_start", "request_id": "someone-else"}
        for frame in (end, late, stranger):
            await connection.send(frame)
        assert (await client.result(request_id, timeout_s=TIMEOUT_S)).frames == [end]
        assert await client.next_frame(TIMEOUT_S) == late
        assert await client.next_frame(TIMEOUT_S) == stranger


async def test_cancel_mid_request_then_wait_for_the_end(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, connection = await connect(peer, store)
    async with client:
        request_id = await client.start_request(home_request("a long job"))
        await connection.recv()
        await connection.send({"type": "stream_start", "request_id": request_id})
        await client.cancel(request_id)
        assert await connection.recv() == {"type": "cancel", "request_id": request_id}
        await connection.send({"type": "stream_end", "request_id": request_id, "mutations": []})
        assert (await client.result(request_id, timeout_s=TIMEOUT_S)).types == [
            "stream_start",
            "stream_end",
        ]


async def test_result_times_out_and_a_request_id_is_used_once(
    peer: ScriptedPeer, store: LocalStore
) -> None:
    client, _connection = await connect(peer, store)
    async with client:
        request_id = await client.start_request(home_request("hi", request_id="r-1"))
        with pytest.raises(ValueError, match="already running"):
            await client.start_request(home_request("again", request_id="r-1"))
        with pytest.raises(TimeoutError):
            await client.result(request_id, timeout_s=0.01)


async def test_next_frame_times_out(peer: ScriptedPeer, store: LocalStore) -> None:
    client, _connection = await connect(peer, store)
    async with client:
        with pytest.raises(TimeoutError):
            await client.next_frame(0.01)


# --- accounts --------------------------------------------------------------------------

TOKENS = {
    "access_token": "a",
    "refresh_token": "r",
    "token_type": "bearer",
    "expires_at": "2030-01-01T00:00:00Z",
}


def auth_server(existing: set[str], calls: list[str]) -> httpx.AsyncClient:
    """An HTTP client whose transport plays the server's auth endpoints."""

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append(request.url.path)
        if request.url.path == "/api/v1/auth/register":
            if body["email"] in existing:
                return httpx.Response(409, json={"detail": "Email already registered"})
            existing.add(body["email"])
            return httpx.Response(201, json=TOKENS)
        if body["email"] in existing and body["password"] == "right-password":
            return httpx.Response(200, json=TOKENS)
        return httpx.Response(401, json={"detail": "Invalid email or password"})

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


async def test_register_then_login() -> None:
    calls: list[str] = []
    async with auth_server(set(), calls) as http:
        assert await register("http://s", "me@x.io", "right-password", http=http) == TOKENS
        assert await login("http://s/", "me@x.io", "right-password", http=http) == TOKENS
    assert calls == ["/api/v1/auth/register", "/api/v1/auth/login"]


async def test_auth_errors_carry_status_and_detail() -> None:
    async with auth_server({"me@x.io"}, []) as http:
        with pytest.raises(AuthError) as refused:
            await login("http://s", "me@x.io", "wrong", http=http)
        assert (refused.value.status_code, refused.value.detail) == (
            401,
            "Invalid email or password",
        )
        with pytest.raises(AuthError) as duplicate:
            await register("http://s", "me@x.io", "right-password", http=http)
        assert duplicate.value.status_code == 409


async def test_register_or_login_logs_in_an_existing_account() -> None:
    calls: list[str] = []
    async with auth_server({"me@x.io"}, calls) as http:
        assert await register_or_login("http://s", "me@x.io", "right-password", http=http) == TOKENS
    assert calls == ["/api/v1/auth/register", "/api/v1/auth/login"]


async def test_a_success_without_tokens_is_an_auth_error() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>"))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(AuthError, match="no access_token"):
            await login("http://s", "me@x.io", "pw", http=http)

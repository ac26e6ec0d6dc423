"""The device protocol core, without a socket: every frame and every error path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.device.frames import (
    Cancel,
    DeviceHello,
    Error,
    FloatingRequest,
    HomeRequest,
    Pong,
    ToolResult,
    client_frame_adapter,
    server_frame_adapter,
)
from app.device.protocol import DeviceProtocol, Heartbeat, ProtocolLimits, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(limits: ProtocolLimits | None = None, clock: Clock | None = None) -> DeviceProtocol:
    return DeviceProtocol(limits=limits or ProtocolLimits(), clock=clock or Clock())


def greeted(**kwargs: Any) -> DeviceProtocol:
    protocol = make(**kwargs)
    protocol.receive_text(json.dumps({"type": "device_hello", "device_id": "desk-1"}))
    return protocol


def send(protocol: DeviceProtocol, frame: dict[str, Any]) -> Any:
    return protocol.receive_text(json.dumps(frame))


def only_error(received: Any) -> Error:
    assert received.frame is None
    [reply] = received.replies
    assert isinstance(reply, Error)
    return reply


def test_hello_greets_the_device() -> None:
    protocol = make()

    received = send(protocol, {"type": "device_hello", "device_id": "desk-1", "agent_ids": ["a"]})

    assert isinstance(received.frame, DeviceHello)
    assert received.replies == []
    assert protocol.state is State.READY
    assert (protocol.device_id, protocol.agent_ids) == ("desk-1", ["a"])


def test_anything_before_hello_gets_hello_required() -> None:
    protocol = make()

    error = only_error(
        send(protocol, {"type": "home_request", "message": "hi", "request_id": "r1"})
    )

    assert (error.code, error.request_id) == ("hello_required", "r1")
    assert protocol.state is State.AWAITING_HELLO


def test_second_hello_is_refused() -> None:
    error = only_error(send(greeted(), {"type": "device_hello", "device_id": "desk-2"}))

    assert error.code == "already_greeted"


def test_ping_gets_pong_with_an_iso_timestamp_even_before_hello() -> None:
    from datetime import datetime

    [reply] = send(make(), {"type": "ping"}).replies

    assert isinstance(reply, Pong)
    assert reply.timestamp is not None
    assert datetime.fromisoformat(reply.timestamp).tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"no_type": 1}', "unknown_type"),
        ('{"type": "stream_text", "request_id": "r", "chunk": "x"}', "unknown_type"),
        ('{"type": "home_request"}', "invalid_frame"),
        ('{"type": "home_request", "message": 42}', "invalid_frame"),
        ('{"type": "home_request", "message": ""}', "invalid_frame"),
        (
            '{"type": "floating_request", "message": "x", "scope": {"type": "galaxy"}}',
            "invalid_frame",
        ),
        ("[1, 2]", "invalid_frame"),
    ],
)
def test_bad_frames_get_a_precise_error_and_change_nothing(raw: str, code: str) -> None:
    protocol = greeted()

    error = only_error(protocol.receive_text(raw))

    assert error.code == code
    assert error.message
    assert protocol.inflight == set()
    assert protocol.state is State.READY


def test_invalid_frame_error_names_the_field_and_the_request() -> None:
    error = only_error(send(greeted(), {"type": "home_request", "request_id": "r9", "message": 42}))

    assert error.request_id == "r9"
    assert error.message.startswith("message:")


def test_binary_frames_are_refused() -> None:
    error = only_error(greeted().receive_bytes())

    assert error.code == "invalid_frame"


def test_oversize_frame_is_refused_before_parsing() -> None:
    protocol = greeted(limits=ProtocolLimits(max_frame_bytes=2048))
    big = json.dumps({"type": "home_request", "message": "é" * 1500})  # 3000+ bytes, 1500 chars

    error = only_error(protocol.receive_text(big))

    assert error.code == "frame_too_large"
    assert protocol.inflight == set()


def test_requests_get_an_id_and_count_as_in_flight() -> None:
    protocol = greeted()

    home = send(protocol, {"type": "home_request", "message": "hi"}).frame
    floating = send(
        protocol,
        {
            "type": "floating_request",
            "request_id": "f1",
            "message": "hi",
            "scope": {"type": "project", "id": "p1"},
        },
    ).frame

    assert isinstance(home, HomeRequest)
    assert home.request_id
    assert isinstance(floating, FloatingRequest)
    assert floating.scope.id == "p1"
    assert protocol.inflight == {home.request_id, "f1"}
    protocol.request_finished("f1")
    assert protocol.inflight == {home.request_id}


def test_duplicate_request_id_is_refused() -> None:
    protocol = greeted()
    send(protocol, {"type": "home_request", "request_id": "r1", "message": "a"})

    error = only_error(send(protocol, {"type": "home_request", "request_id": "r1", "message": "b"}))

    assert (error.code, error.request_id) == ("duplicate_request_id", "r1")


def test_in_flight_requests_are_limited_per_connection() -> None:
    protocol = greeted(limits=ProtocolLimits(max_inflight_requests=2))
    for n in range(2):
        send(protocol, {"type": "home_request", "request_id": f"r{n}", "message": "a"})

    error = only_error(send(protocol, {"type": "home_request", "request_id": "r2", "message": "a"}))

    assert (error.code, error.request_id) == ("too_many_requests", "r2")
    protocol.request_finished("r0")
    assert send(protocol, {"type": "home_request", "request_id": "r2", "message": "a"}).frame


def test_cancel_needs_a_running_request() -> None:
    protocol = greeted()
    send(protocol, {"type": "home_request", "request_id": "r1", "message": "a"})

    accepted = send(protocol, {"type": "cancel", "request_id": "r1"})
    error = only_error(send(protocol, {"type": "cancel", "request_id": "nope"}))

    assert isinstance(accepted.frame, Cancel)
    assert (error.code, error.request_id) == ("unknown_request", "nope")


def test_rate_limit_refuses_with_retry_after_then_recovers() -> None:
    clock = Clock()
    protocol = greeted(limits=ProtocolLimits(messages_per_minute=3), clock=clock)
    # The hello counted as one frame.
    for n in range(2):
        clock.now += 1
        assert send(protocol, {"type": "home_request", "request_id": f"r{n}", "message": "a"}).frame

    clock.now += 1
    error = only_error(send(protocol, {"type": "home_request", "request_id": "r9", "message": "a"}))

    assert error.code == "rate_limited"
    assert error.retry_after == pytest.approx(57.0)
    assert "r9" not in protocol.inflight
    # Heartbeats and tool results are never limited.
    assert send(protocol, {"type": "ping"}).replies[0].type == "pong"
    clock.now += 57
    assert send(protocol, {"type": "home_request", "request_id": "r9", "message": "a"}).frame


async def test_tool_result_resolves_only_calls_issued_here() -> None:
    protocol = greeted()
    call = protocol.pending.open(request_id="r1")

    foreign = send(protocol, {"type": "tool_result", "id": "someone-elses", "rows": []})
    ours = send(protocol, {"type": "tool_result", "id": call.id, "rows": [{"id": "t1"}]})

    assert foreign.replies == []
    assert foreign.frame is None
    assert ours.replies == []
    assert await call.future == {"rows": [{"id": "t1"}]}
    assert len(protocol.pending) == 0


@pytest.mark.parametrize(
    "fields",
    [{}, {"rows": [], "ok": True}],
)
def test_tool_result_must_carry_exactly_one_result(fields: dict[str, Any]) -> None:
    error = only_error(send(greeted(), {"type": "tool_result", "id": "c1", **fields}))

    assert error.code == "invalid_frame"


def test_tool_result_row_may_be_null() -> None:
    frame = client_frame_adapter.validate_python({"type": "tool_result", "id": "c", "row": None})

    assert isinstance(frame, ToolResult)
    assert frame.payload() == {"row": None}


def test_agent_frames_for_unknown_runs_are_refused() -> None:
    error = only_error(send(greeted(), {"type": "agent_complete", "run_id": "x", "files_read": 0}))

    assert error.code == "unknown_run"


def test_heartbeat_pings_on_interval_and_closes_silent_connections() -> None:
    clock = Clock()
    protocol = make(limits=ProtocolLimits(ping_interval_s=30, idle_timeout_s=90), clock=clock)

    assert protocol.heartbeat() is Heartbeat.NOTHING
    clock.now += 30
    assert protocol.heartbeat() is Heartbeat.SEND_PING
    assert protocol.heartbeat() is Heartbeat.NOTHING
    clock.now += 50
    protocol.receive_text('{"type": "pong"}')  # any frame proves the client is alive
    clock.now += 89
    assert protocol.heartbeat() is Heartbeat.SEND_PING
    assert protocol.seconds_to_next_heartbeat() == pytest.approx(1)
    clock.now += 1
    assert protocol.heartbeat() is Heartbeat.CLOSE


def test_server_frames_serialise_without_empty_fields() -> None:
    frame = server_frame_adapter.validate_python(
        {"type": "tool_call", "id": "c1", "action": "select", "table": "tasks", "request_id": "r"}
    )

    assert json.loads(frame.to_json()) == {
        "type": "tool_call",
        "id": "c1",
        "action": "select",
        "table": "tasks",
        "request_id": "r",
    }

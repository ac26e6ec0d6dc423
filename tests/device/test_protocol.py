"""The device protocol core, without a socket: every frame and every error path."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.device.protocol import (
    CloseCode,
    DeviceProtocol,
    Heartbeat,
    Noise,
    ProtocolLimits,
    State,
)
from protocol.errors import ToolCallTooLargeError
from protocol.frames import (
    AgentComplete,
    AgentData,
    Cancel,
    DeviceHello,
    Error,
    FloatingRequest,
    HomeRequest,
    Mutation,
    Pong,
    StreamEnd,
    StreamText,
    ToolCall,
    ToolResult,
    client_frame_adapter,
    server_frame_adapter,
)


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
    refused = send(protocol, {"type": "home_request", "request_id": "r9", "message": "a"})
    error, end = refused.replies

    assert refused.frame is None
    assert isinstance(error, Error)
    assert error.code == "rate_limited"
    assert error.retry_after == pytest.approx(57.0)
    # `rate_limited` ends a chat request with its stream_end, as the user's limit does.
    assert isinstance(end, StreamEnd)
    assert (end.request_id, end.mutations) == ("r9", [])
    assert end.usage is not None
    assert (end.usage.model_calls, end.usage.cost_usd, end.usage.duration_ms) == (0, 0.0, 0)
    assert "r9" not in protocol.inflight
    # Heartbeats and tool results are never limited.
    assert send(protocol, {"type": "ping"}).replies[0].type == "pong"
    clock.now += 57
    assert send(protocol, {"type": "home_request", "request_id": "r9", "message": "a"}).frame


def test_tool_result_resolves_only_calls_issued_here() -> None:
    protocol = greeted()
    call = protocol.pending.open(request_id="r1")

    foreign = send(protocol, {"type": "tool_result", "id": "someone-elses", "rows": []})
    ours = send(protocol, {"type": "tool_result", "id": call.id, "rows": [{"id": "t1"}]})

    assert foreign.replies == []
    assert (foreign.frame, foreign.result) == (None, None)
    assert ours.replies == []
    assert ours.result is not None
    assert ours.result.payload() == {"rows": [{"id": "t1"}]}
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


AGENT_DATA = {"type": "agent_data", "run_id": "run-1", "files": []}
AGENT_COMPLETE = {"type": "agent_complete", "run_id": "run-1", "files_read": 0}


def test_a_started_run_takes_its_frames_until_agent_complete() -> None:
    protocol = greeted()
    protocol.run_started("run-1")

    data = send(protocol, AGENT_DATA)
    complete = send(protocol, AGENT_COMPLETE)

    assert isinstance(data.frame, AgentData)
    assert isinstance(complete.frame, AgentComplete)
    assert protocol.runs == set()
    assert only_error(send(protocol, AGENT_DATA)).code == "unknown_run"  # the desktop said done


def test_a_run_the_server_ended_refuses_further_frames() -> None:
    protocol = greeted()
    protocol.run_started("run-1")
    protocol.run_finished("run-1")

    assert only_error(send(protocol, AGENT_DATA)).code == "unknown_run"
    assert only_error(send(protocol, AGENT_COMPLETE)).code == "unknown_run"


@pytest.mark.parametrize(
    "frame",
    [
        {**AGENT_DATA, "files": [{"path": "p" * 1025, "name": "a.md", "content": ""}]},
        {**AGENT_DATA, "files": [{"path": "/a.md", "name": "n" * 256, "content": ""}]},
        {**AGENT_DATA, "files": [{"path": "/a.md", "name": "a.md"}]},
        {**AGENT_COMPLETE, "files_read": -1},
        {**AGENT_COMPLETE, "errors": ["e"] * 101},
        {**AGENT_COMPLETE, "errors": ["e" * 1001]},
    ],
)
def test_malformed_run_frames_are_invalid_and_leave_the_run_open(frame: dict[str, Any]) -> None:
    protocol = greeted()
    protocol.run_started("run-1")

    assert only_error(send(protocol, frame)).code == "invalid_frame"
    assert protocol.runs == {"run-1"}


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


# -- hostile input -------------------------------------------------------------


def test_a_nul_in_the_device_id_is_refused_before_the_device_is_greeted() -> None:
    # A stored and logged id: PostgreSQL cannot hold a NUL (it stopped every
    # scheduler pass while such a device was connected).
    protocol = make()

    error = only_error(send(protocol, {"type": "device_hello", "device_id": "desk\u0000"}))

    assert (error.code, error.message) == (
        "invalid_frame",
        "device_id: String should match pattern '^[^\\x00-\\x1f\\x7f]+$'",
    )
    assert protocol.state is State.AWAITING_HELLO


@pytest.mark.parametrize("field", ["thread_id", "request_id"])
def test_an_id_with_a_control_character_is_an_invalid_frame(field: str) -> None:
    protocol = greeted()
    frame = {"type": "home_request", "request_id": "r1", "message": "hi", field: "x\u0000y"}

    error = only_error(send(protocol, frame))

    assert error.code == "invalid_frame"
    assert error.message.startswith(f"{field}: String should match pattern")
    assert error.request_id == ("r1" if field == "thread_id" else None)
    assert protocol.inflight == set()


@pytest.mark.parametrize("request_id", ["r\u0000", "r\u007f", "r" * 129])
def test_a_refused_frame_echoes_only_a_request_id_an_error_frame_can_carry(
    request_id: str,
) -> None:
    protocol = greeted()
    error = only_error(send(protocol, {"type": "nope", "request_id": request_id}))

    assert (error.code, error.request_id) == ("unknown_type", None)
    assert server_frame_adapter.validate_json(error.model_dump_json()) == error


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "nope", "request_id": "r\ud800"},
        {"type": "home_request", "request_id": "r1", "message": "hi\udfff"},
        {
            "type": "tool_result",
            "request_id": "r1",
            "call_id": "c1",
            "result": {"rows": ["\ud800"]},
        },
        {"type": "ping", "\udc00": 1},
    ],
    ids=["request-id", "message", "tool-result-rows", "key"],
)
def test_a_lone_surrogate_anywhere_is_an_invalid_frame(frame: dict[str, Any]) -> None:
    # No UTF-8 encoder takes it: passed on, it failed later as a "model error".
    protocol = greeted()

    error = only_error(send(protocol, frame))

    assert (error.code, error.message, error.request_id) == (
        "invalid_frame",
        "frame holds text that is not valid Unicode (a lone UTF-16 surrogate)",
        None,
    )
    assert server_frame_adapter.validate_json(error.model_dump_json()) == error


def test_a_surrogate_pair_is_text_like_any_other() -> None:
    protocol = greeted()

    received = send(protocol, {"type": "home_request", "request_id": "r1", "message": "hi 😀"})

    assert isinstance(received.frame, HomeRequest)
    assert received.frame.message == "hi 😀"


def test_an_unknown_type_is_named_back_only_when_short() -> None:
    protocol = greeted()

    short = only_error(send(protocol, {"type": "nope"}))
    long = only_error(send(protocol, {"type": "\\" * 500_000}))

    assert short.message == "unknown frame type 'nope'"
    assert long.message == "unknown frame type"


def test_a_number_too_long_to_read_is_invalid_json_not_a_crash() -> None:
    protocol = greeted()

    error = only_error(protocol.receive_text('{"type": "ping", "n": ' + "9" * 5000 + "}"))

    assert (error.code, error.message) == ("invalid_json", "frame holds a number too long to read")


@pytest.mark.parametrize("depth", [65, 1_000, 100_000])
def test_deeply_nested_json_is_invalid_json_not_a_crash(depth: int) -> None:
    protocol = greeted()

    error = only_error(protocol.receive_text("[" * depth + "]" * depth))

    assert error.code == "invalid_json"
    assert "64 levels" in error.message


def test_nesting_within_the_limit_is_read_as_usual() -> None:
    protocol = greeted()
    call = protocol.pending.open(request_id="r1")
    nested: Any = {"leaf": 1}
    for _ in range(60):
        nested = {"inner": nested}

    received = send(protocol, {"type": "tool_result", "id": call.id, "row": nested})

    assert received.replies == []
    assert received.result is not None
    assert received.result.payload() == {"row": nested}


def test_invalid_frames_count_against_the_rate_limit() -> None:
    clock = Clock()
    protocol = greeted(limits=ProtocolLimits(messages_per_minute=5), clock=clock)
    for _ in range(4):  # the hello was the first frame of the minute
        only_error(protocol.receive_text("not json"))

    error = only_error(send(protocol, {"type": "cancel", "request_id": "r1"}))

    assert error.code == "rate_limited"


def test_a_connection_that_keeps_sending_invalid_frames_is_closed() -> None:
    clock = Clock()
    protocol = greeted(limits=ProtocolLimits(invalid_frames_per_minute=3), clock=clock)
    kinds = ["not json", "[" * 200 + "]" * 200, json.dumps({"type": "nope"})]
    for raw in kinds:
        received = protocol.receive_text(raw)
        assert received.close is None
        assert received.replies[0].type == "error"

    received = protocol.receive_bytes()

    assert received.replies[0].type == "error"  # told why, then closed
    assert received.close is not None
    assert received.close.code is CloseCode.TOO_MANY_INVALID_FRAMES
    assert int(received.close.code) == 4001
    assert protocol.noise[Noise.INVALID] == 4


def test_invalid_frames_spread_over_time_do_not_close_the_connection() -> None:
    clock = Clock()
    protocol = greeted(limits=ProtocolLimits(invalid_frames_per_minute=3), clock=clock)
    for _ in range(10):
        clock.now += 30
        assert protocol.receive_text("not json").close is None


def test_unknown_tool_results_are_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol = greeted(limits=ProtocolLimits(invalid_frames_per_minute=1_000))

    with caplog.at_level("WARNING", logger="app.device.protocol"):
        for n in range(50):
            received = send(protocol, {"type": "tool_result", "id": f"forged-{n}", "rows": []})
            assert received.replies == []

    assert protocol.noise[Noise.UNKNOWN_TOOL_RESULT] == 50
    assert len(caplog.records) == 1


def test_unknown_tool_results_are_rate_limited_answers_to_our_calls_are_not() -> None:
    clock = Clock()
    protocol = greeted(limits=ProtocolLimits(messages_per_minute=3), clock=clock)
    for n in range(2):
        assert (
            send(protocol, {"type": "tool_result", "id": f"forged-{n}", "rows": []}).replies == []
        )
    refused = only_error(send(protocol, {"type": "tool_result", "id": "forged-9", "rows": []}))
    call = protocol.pending.open(request_id="r1")

    ours = send(protocol, {"type": "tool_result", "id": call.id, "rows": []})

    assert refused.code == "rate_limited"
    assert ours.replies == []
    assert ours.result is not None
    assert ours.result.id == call.id


def test_a_late_answer_to_a_timed_out_call_is_not_noise() -> None:
    protocol = greeted(limits=ProtocolLimits(invalid_frames_per_minute=1))
    call = protocol.pending.open(request_id="r1")
    protocol.pending.close(call.id)  # what a time-out does

    late = send(protocol, {"type": "tool_result", "id": call.id, "rows": []})

    assert (late.replies, late.result, late.close) == ([], None, None)
    assert not protocol.noise


# -- outgoing frames -------------------------------------------------------------


def test_long_stream_text_is_split_below_the_frame_limit() -> None:
    protocol = greeted(limits=ProtocolLimits(max_frame_bytes=4096))
    answer = "ab\n\u00e9\U0001f600\x01" * 3_000  # multi-byte and escaped characters

    texts = protocol.encode(StreamText(request_id="r1", chunk=answer))

    assert len(texts) > 1
    assert all(len(text.encode()) <= 4096 for text in texts)
    frames = [server_frame_adapter.validate_json(text) for text in texts]
    assert all(isinstance(f, StreamText) and f.request_id == "r1" for f in frames)
    assert "".join(f.chunk for f in frames if isinstance(f, StreamText)) == answer


def test_small_frames_go_out_as_one_message() -> None:
    frame = StreamText(request_id="r1", chunk="hello")

    assert greeted().encode(frame) == [frame.to_json()]


def test_an_oversize_stream_end_reports_mutations_by_id() -> None:
    protocol = greeted(limits=ProtocolLimits(max_frame_bytes=4096))
    mutations = [
        Mutation(action="update", table="notes", data={"id": f"n{n}", "content": "x" * 1000})
        for n in range(20)
    ]

    [text] = protocol.encode(StreamEnd(request_id="r1", mutations=mutations))

    assert len(text.encode()) <= 4096
    end = server_frame_adapter.validate_json(text)
    assert isinstance(end, StreamEnd)
    assert [(m.action, m.table, m.data) for m in end.mutations] == [
        ("update", "notes", {"id": f"n{n}"}) for n in range(20)
    ]


def test_a_tool_call_over_the_limit_fails_as_a_tool_error() -> None:
    protocol = greeted(limits=ProtocolLimits(max_frame_bytes=4096))
    call = ToolCall(id="c1", action="insert", table="notes", data={"content": "x" * 5000})

    with pytest.raises(ToolCallTooLargeError):
        protocol.encode(call)

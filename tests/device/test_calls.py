"""Client-executed calls and the connection registry, without a socket."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from app.device.calls import CallTarget
from app.device.link import DeviceLink
from app.device.pending import Answer
from app.device.protocol import DeviceProtocol, ProtocolLimits
from app.device.registry import ConnectionLimitError, DeviceRegistry
from protocol.errors import (
    ClientToolError,
    DeviceDisconnectedError,
    DeviceOfflineError,
    ToolCallTimeoutError,
)
from protocol.frames import ServerFrame, ToolAction, ToolCall, ToolResult
from tools.context import call_desktop, turn_context


class FakeDesktop:
    """A link whose sent frames land in a queue, answered by the test."""

    def __init__(self, user_id: uuid.UUID | None = None, device_id: str = "desk") -> None:
        self.sent: asyncio.Queue[ToolCall] = asyncio.Queue()
        self.link = DeviceLink(
            user_id=user_id or uuid.uuid4(),
            device_id=device_id,
            protocol=DeviceProtocol(limits=ProtocolLimits()),
            send=self._send,
            close=self._close,
        )

    async def _send(self, frame: ServerFrame) -> None:
        assert isinstance(frame, ToolCall)
        await self.sent.put(frame)

    async def _close(self, code: int, reason: str) -> None:
        pass

    async def answer_next(self, **result: Any) -> ToolCall:
        call = await asyncio.wait_for(self.sent.get(), 2)
        answer = ToolResult(id=call.id, **result)
        assert self.link.protocol.pending.take(answer) is Answer.TAKEN
        self.link.deliver(answer)
        return call


def target_for(
    desktop: FakeDesktop, *, timeout_s: float = 2.0, request_id: str = "r1"
) -> CallTarget:
    return CallTarget(link=desktop.link, timeout_s=timeout_s, request_id=request_id)


async def test_call_sends_the_frame_and_returns_the_result() -> None:
    desktop = FakeDesktop()
    target = target_for(desktop)
    call = asyncio.create_task(target.execute("select", "tasks", filters={"status": "todo"}))
    frame = await desktop.answer_next(rows=[{"id": "t1"}])

    assert await call == {"rows": [{"id": "t1"}]}
    assert (frame.action, frame.table, frame.filters, frame.request_id) == (
        "select",
        "tasks",
        {"status": "todo"},
        "r1",
    )
    assert frame.data is None
    assert len(desktop.link.protocol.pending) == 0


async def test_mutations_are_collected_for_stream_end() -> None:
    desktop = FakeDesktop()
    target = target_for(desktop)
    insert = asyncio.create_task(target.execute("insert", "tasks", data={"title": "A"}))
    await desktop.answer_next(row={"id": "t1", "title": "A"})
    await insert
    select = asyncio.create_task(target.execute("select", "tasks"))
    await desktop.answer_next(rows=[])
    await select
    delete = asyncio.create_task(target.execute("delete", "tasks", data={"id": "t1"}))
    await desktop.answer_next(deleted=True)
    await delete

    assert [(m.action, m.table, m.data) for m in target.mutations] == [
        ("insert", "tasks", {"id": "t1", "title": "A"}),
        ("delete", "tasks", {"id": "t1"}),
    ]


async def test_unanswered_call_times_out_and_leaves_nothing_pending() -> None:
    desktop = FakeDesktop()
    with pytest.raises(ToolCallTimeoutError):
        await target_for(desktop, timeout_s=0.05).execute("select", "tasks")

    assert len(desktop.link.protocol.pending) == 0
    # A late answer is ignored, not delivered to anyone.
    late = await desktop.sent.get()
    pending = desktop.link.protocol.pending
    assert pending.take(ToolResult(id=late.id, rows=[])) is Answer.LATE
    # Only once: a second answer to the same call is an unknown id.
    assert pending.take(ToolResult(id=late.id, rows=[])) is Answer.UNKNOWN


async def test_disconnect_fails_every_pending_call_at_once() -> None:
    desktop = FakeDesktop()
    target = target_for(desktop)
    calls = [asyncio.create_task(target.execute("select", "tasks")) for _ in range(3)]
    for _ in range(3):
        await desktop.sent.get()
    desktop.link.fail_all(DeviceDisconnectedError())

    results = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(r, DeviceDisconnectedError) for r in results)
    assert len(desktop.link.protocol.pending) == 0


async def test_client_error_is_raised_as_client_tool_error() -> None:
    desktop = FakeDesktop()
    call = asyncio.create_task(target_for(desktop).execute("update", "tasks", data={"id": "x"}))
    await desktop.answer_next(error="no task with id x")

    with pytest.raises(ClientToolError, match="no task with id x"):
        await call


async def test_without_a_device_calls_fail_as_offline() -> None:
    with pytest.raises(DeviceOfflineError, match="not connected"):
        await call_desktop(ToolAction.SELECT, "tasks")  # no desktop bound for the tools
    with pytest.raises(DeviceOfflineError):
        await CallTarget(link=None, timeout_s=1).execute("select", "tasks")


async def test_concurrent_requests_reach_their_own_device() -> None:
    ada, grace = FakeDesktop(device_id="ada"), FakeDesktop(device_id="grace")

    async def request(desktop: FakeDesktop, request_id: str) -> dict[str, Any]:
        with turn_context(desktop=target_for(desktop, request_id=request_id).execute):
            await asyncio.sleep(0)  # interleave with the other request
            return await call_desktop(ToolAction.SELECT, "notes")

    both = asyncio.gather(request(ada, "ra"), request(grace, "rg"))
    ada_call = await ada.answer_next(rows=[{"id": "ada-note"}])
    grace_call = await grace.answer_next(rows=[{"id": "grace-note"}])

    assert list(await both) == [{"rows": [{"id": "ada-note"}]}, {"rows": [{"id": "grace-note"}]}]
    assert (ada_call.request_id, grace_call.request_id) == ("ra", "rg")


def test_registry_limits_sockets_per_user_and_in_total() -> None:
    registry = DeviceRegistry(max_per_user=2, max_total=3)
    ada, grace = uuid.uuid4(), uuid.uuid4()
    registry.reserve(ada)
    registry.reserve(ada)

    with pytest.raises(ConnectionLimitError, match="at most 2 connections per user") as per_user:
        registry.reserve(ada)
    registry.reserve(grace)
    with pytest.raises(ConnectionLimitError, match="connection limit"):
        registry.reserve(uuid.uuid4())

    assert per_user.value.retry_after > 0
    registry.release(ada)
    registry.reserve(grace)  # room again after a release
    assert registry.connection_count == 3


async def test_registry_finds_devices_and_prefers_the_most_recently_active() -> None:
    registry = DeviceRegistry(max_per_user=5, max_total=10)
    user = uuid.uuid4()
    office, laptop = FakeDesktop(user, "office"), FakeDesktop(user, "laptop")
    registry.bind(office.link)
    registry.bind(laptop.link)
    office.link.touch()

    assert registry.is_online(user)
    assert registry.is_online(user, "laptop")
    assert not registry.is_online(user, "phone")
    assert not registry.is_online(uuid.uuid4())
    assert registry.device(user) is office.link
    laptop.link.touch()
    assert registry.device(user) is laptop.link

    registry.unbind(laptop.link)
    assert registry.devices(user) == [office.link]


async def test_reconnecting_device_replaces_its_older_link() -> None:
    registry = DeviceRegistry(max_per_user=5, max_total=10)
    user = uuid.uuid4()
    old, new = FakeDesktop(user, "office"), FakeDesktop(user, "office")
    registry.bind(old.link)

    replaced = registry.bind(new.link)
    registry.unbind(old.link)  # the old connection's cleanup must not remove the new one

    assert replaced is old.link
    assert registry.device(user, "office") is new.link


async def test_ids_the_desktop_returns_are_recorded() -> None:
    desktop = FakeDesktop()
    target = target_for(desktop)
    select = asyncio.create_task(target.execute("select", "tasks"))
    await desktop.answer_next(rows=[{"id": "t1"}, {"id": "t2"}])
    await select
    get = asyncio.create_task(target.execute("get", "notes", data={"id": "n1"}))
    await desktop.answer_next(row={"id": "n1"})
    await get
    missing = asyncio.create_task(target.execute("get", "notes", data={"id": "zz"}))
    await desktop.answer_next(row=None)
    await missing

    assert target.returned_ids == {"tasks:t1", "tasks:t2", "notes:n1"}

"""A run's frames, checked against its limits as they arrive; long files cut into pieces."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.batch.runner import RunEndedError, RunInbox, RunLimits, split_text
from app.device.link import DeviceLink
from app.device.protocol import DeviceProtocol, ProtocolLimits
from protocol.errors import DeviceDisconnectedError
from protocol.frames import AgentComplete, AgentData, AgentFile, ServerFrame

LIMITS = RunLimits(
    max_files=4, max_file_bytes=10, max_total_bytes=15, idle_timeout_s=0.05, chunk_chars=100
)


def data(*files: tuple[str, str]) -> AgentData:
    return AgentData(
        run_id="r",
        files=[AgentFile(path=f"/d/{name}", name=name, content=body) for name, body in files],
    )


async def drain(inbox: RunInbox) -> list[str]:
    names: list[str] = []
    while not isinstance(received := await inbox.next(), AgentComplete):
        names.append(received.name)
    return names


async def test_files_past_a_limit_are_dropped_on_arrival_and_named() -> None:
    inbox = RunInbox(LIMITS, [".md", ".TXT"])

    inbox.receive(data(("a.md", "12345"), ("big.md", "x" * 11), ("b.txt", "é" * 3)))
    inbox.receive(data(("c.MD", "123456"), ("d.md", "1")))
    inbox.receive(data(("e.pdf", "1")))
    inbox.receive(AgentComplete(run_id="r", files_read=6))

    assert await drain(inbox) == ["a.md", "b.txt"]
    assert inbox.bytes_accepted == 11  # "é" is two bytes in UTF-8
    assert inbox.errors == [
        "/d/big.md: 11 bytes, over the limit of 10 bytes per file; skipped",
        "/d/c.MD: over the limit of 15 bytes per run; skipped",
        "/d/d.md: over the limit of 4 files per run; skipped",
        "/d/e.pdf: over the limit of 4 files per run; skipped",
    ]


async def test_a_file_without_one_of_the_agents_extensions_is_not_kept() -> None:
    inbox = RunInbox(LIMITS, [".md"])

    inbox.receive(data(("notes.md.exe", "1"), ("ok.md", "1")))
    inbox.receive(AgentComplete(run_id="r", files_read=2))

    assert await drain(inbox) == ["ok.md"]
    assert inbox.errors == ["/d/notes.md.exe: not one of the agent's file extensions; skipped"]


async def test_waiting_longer_than_the_idle_time_ends_the_run() -> None:
    inbox = RunInbox(LIMITS, [".md"])

    with pytest.raises(RunEndedError, match=r"no agent_data or agent_complete for 0\.05 seconds"):
        await inbox.next()


def test_long_text_is_cut_at_line_breaks_into_pieces_under_the_size() -> None:
    paragraph = "word " * 30  # 150 characters
    text = "\n\n".join([paragraph] * 3)

    pieces = split_text(text, 200)

    assert all(len(piece) <= 200 for piece in pieces)
    assert [piece.strip() for piece in pieces] == [paragraph.strip()] * 3
    assert split_text("x" * 450, 200) == ["x" * 200, "x" * 200, "x" * 50]
    assert split_text("  \n\n ", 200) == []
    assert split_text("short", 200) == ["short"]


async def test_a_link_hands_run_frames_to_the_runs_listener_until_it_closes() -> None:
    async def send(frame: ServerFrame) -> None:
        return None

    async def close(code: int, reason: str) -> None:
        return None

    link = DeviceLink(
        user_id=uuid.uuid4(),
        device_id="desk",
        protocol=DeviceProtocol(limits=ProtocolLimits()),
        send=send,
        close=close,
    )
    received: list[str] = []
    link.open_run("r", lambda frame: received.append(frame.type))

    link.deliver_run(data(("a.md", "1")))
    link.deliver_run(AgentData(run_id="other", files=[]))
    link.close_run("r")
    link.deliver_run(AgentComplete(run_id="r", files_read=1))
    link.fail_all(DeviceDisconnectedError())

    assert received == ["agent_data"]
    assert link.protocol.runs == set()
    assert link.disconnected.is_set()
    await asyncio.wait_for(link.disconnected.wait(), 1)

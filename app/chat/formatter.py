"""Graph events -> device frames, for one streamed turn.

Only the supervisor's own answer becomes `stream_text`: sub-agent tokens and
tool chatter stay on the server. Home answers go through the tag filter so no
invented reference reaches the UI; Floating answers through the plain-text
filter, which keeps only the words. A Floating answer is held back until the
domain is known (the first sub-agent the supervisor delegates to, `tasks` if
none), because `floating_domain` must precede `stream_start`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk

from agents.supervisors import DOMAIN_OF_SUBAGENT
from app.chat.tags import PlainTextFilter, TagFilter
from protocol.frames import Domain, FloatingDomain, ServerFrame, StreamStart, StreamText

SUPERVISOR_MODEL_NODE = "model"
TASK_TOOL = "task"


def delegations(update: Any) -> list[str]:
    """Sub-agent names the supervisor delegated to in one `updates` event."""
    names: list[str] = []
    for node, values in (update or {}).items():
        if node != SUPERVISOR_MODEL_NODE or not isinstance(values, dict):
            continue
        for message in values.get("messages", []):
            if isinstance(message, AIMessage):
                names.extend(
                    str(call["args"].get("subagent_type"))
                    for call in message.tool_calls
                    if call["name"] == TASK_TOOL
                )
    return names


def supervisor_text(data: Any) -> str:
    """The text of a supervisor token event (`messages` mode), or ""."""
    chunk, metadata = data
    if not isinstance(chunk, AIMessageChunk):
        return ""
    if metadata.get("langgraph_node") != SUPERVISOR_MODEL_NODE:
        return ""
    return chunk.text


class TurnStream:
    """Feeds one turn's graph events and emits the frames the client sees."""

    def __init__(
        self,
        *,
        emit: Callable[[ServerFrame], Awaitable[None]],
        request_id: str,
        floating: bool,
        known_ids: set[str],
    ) -> None:
        self._emit = emit
        self._request_id = request_id
        self._floating = floating
        self._tags = PlainTextFilter(known_ids) if floating else TagFilter(known_ids)
        self._opened = False
        self._held: list[str] = []
        self.answer: list[str] = []
        self.domain: Domain | None = None

    async def start(self) -> None:
        if not self._floating:
            await self._open()

    async def event(self, namespace: tuple[str, ...], mode: str, data: Any) -> None:
        if namespace:  # inside a sub-agent: never shown to the user
            return
        if mode == "updates":
            for name in delegations(data):
                if self.domain is None:
                    self.domain = DOMAIN_OF_SUBAGENT.get(name, Domain.TASKS)
                    if self._floating:
                        await self._open()
        elif mode == "messages":
            text = supervisor_text(data)
            if text:
                await self._text(self._tags.feed(text))

    async def finish(self) -> None:
        await self._text(self._tags.finish())
        if not self._opened:
            await self._open()

    async def _open(self) -> None:
        if self._opened:
            return
        self._opened = True
        if self._floating:
            domain = self.domain or Domain.TASKS
            await self._emit(FloatingDomain(request_id=self._request_id, domain=domain))
        await self._emit(StreamStart(request_id=self._request_id))
        held, self._held = "".join(self._held), []
        if held:
            await self._send(held)

    async def _text(self, text: str) -> None:
        if not text:
            return
        if not self._opened:
            self._held.append(text)
            return
        await self._send(text)

    async def _send(self, text: str) -> None:
        self.answer.append(text)
        await self._emit(StreamText(request_id=self._request_id, chunk=text))

"""What the tools know about the turn they serve: the desktop, the user's time zone, "now".

The server binds a `TurnContext` around a turn with `turn_context(...)`; every
tool of that turn (however deep inside a sub-agent, in whatever task the graph
spawns) reads it with `current_turn_context()`. A `ContextVar` keeps
concurrent turns apart. This is how the tools reach what only the server has
(the user's desktop, embeddings, memory) without importing the server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypedDict, Unpack
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol.errors import DeviceOfflineError
from protocol.frames import ToolAction

Embed = Callable[[str], Awaitable[list[float] | None]]
"""Turns a note's text into its embedding; None when there is nothing to index with."""

CoreMemoryWriter = Callable[[str, str], Awaitable[None]]
"""Stores one core-memory preference (key, value) for the user of the turn."""


class DesktopCall(Protocol):
    """Runs one client-executed action on the user's desktop and returns its result.

    Raises a `protocol.errors.ToolCallError` when the desktop cannot answer.
    """

    def __call__(
        self,
        action: ToolAction | str,
        table: str | None = None,
        data: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        vector: list[float] | None = None,
        limit: int | None = None,
    ) -> Awaitable[dict[str, Any]]: ...


@dataclass(frozen=True, slots=True)
class TurnContext:
    """The per-turn facts the tools need.

    `timezone` is an IANA name such as "Europe/Berlin"; ISO dates the model
    passes are read in it and dates in tool answers are shown in it. `now` pins
    the current time (a naive value is read in `timezone`); None means the real
    clock. `embed`, when set, makes `create_note` and `update_note` also put the
    note into the desktop's vector index. `memory` is what the user's long-term
    memory contributes to the supervisor's prompt this turn. `desktop` runs the
    turn's tool calls (None: no desktop is connected); `returned_ids` collects
    the rows it returned, as the server's tag filter names them.
    `remember` stores what `update_core_memory` is told (None: no memory).
    """

    timezone: str = "UTC"
    now: datetime | None = None
    embed: Embed | None = None
    memory: str = ""
    desktop: DesktopCall | None = None
    returned_ids: AbstractSet[str] = frozenset()
    remember: CoreMemoryWriter | None = None

    def __post_init__(self) -> None:
        # Refuse an unknown zone where it enters, not later inside a tool where
        # it would silently shift every date the user sees.
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            msg = f"unknown IANA time zone {self.timezone!r}"
            raise ValueError(msg) from exc

    @property
    def zone(self) -> ZoneInfo:
        """The user's time zone (ZoneInfo caches instances, so this is cheap)."""
        return ZoneInfo(self.timezone)

    def local_now(self) -> datetime:
        """The current time as an aware datetime in the user's zone."""
        if self.now is None:
            return datetime.now(UTC).astimezone(self.zone)
        if self.now.tzinfo is None:
            return self.now.replace(tzinfo=self.zone)
        return self.now.astimezone(self.zone)


_DEFAULT = TurnContext()
_current: ContextVar[TurnContext] = ContextVar("turn_context", default=_DEFAULT)


class TurnFacts(TypedDict, total=False):
    """The fields of `TurnContext`, as `turn_context` takes them."""

    timezone: str
    now: datetime | None
    embed: Embed | None
    memory: str
    desktop: DesktopCall | None
    returned_ids: AbstractSet[str]
    remember: CoreMemoryWriter | None


@contextmanager
def turn_context(**facts: Unpack[TurnFacts]) -> Iterator[TurnContext]:
    """Bind the turn's facts for everything in this context (and the tasks it starts).

    Facts not given keep the enclosing context's values, so a nested binding
    changes only what it names.
    """
    token = _current.set(dataclasses.replace(_current.get(), **facts))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_turn_context() -> TurnContext:
    """The bound `TurnContext`, or the default (UTC, real clock, no desktop, no memory)."""
    return _current.get()


async def call_desktop(
    action: ToolAction,
    table: str | None = None,
    *,
    data: dict[str, Any] | None = None,
    filters: dict[str, Any] | None = None,
    vector: list[float] | None = None,
) -> dict[str, Any]:
    """Run one action on the turn's desktop; `DeviceOfflineError` when there is none."""
    desktop = current_turn_context().desktop
    if desktop is None:
        raise DeviceOfflineError
    return await desktop(action, table, data=data, filters=filters, vector=vector)

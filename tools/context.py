"""What the tools know about the turn they serve: the user's time zone, "now", embeddings.

The chat layer binds a `TurnContext` around a turn with `turn_context(...)`;
every tool of that turn (however deep inside a sub-agent, in whatever task the
graph spawns) reads it with `current_turn_context()`. A `ContextVar` keeps
concurrent turns apart, the same way `app.device.calls` binds the desktop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Embed = Callable[[str], Awaitable[list[float] | None]]
"""Turns a note's text into its embedding; None when there is nothing to index with."""


@dataclass(frozen=True, slots=True)
class TurnContext:
    """The per-turn facts the tools need.

    `timezone` is an IANA name such as "Europe/Berlin"; ISO dates the model
    passes are read in it and dates in tool answers are shown in it. `now` pins
    the current time (a naive value is read in `timezone`); None means the real
    clock. `embed`, when set, makes `create_note` and `update_note` also put the
    note into the desktop's vector index. `memory` is what the user's long-term
    memory contributes to the supervisor's prompt this turn.
    """

    timezone: str = "UTC"
    now: datetime | None = None
    embed: Embed | None = None
    memory: str = ""

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


@contextmanager
def turn_context(
    *,
    timezone: str = "UTC",
    now: datetime | None = None,
    embed: Embed | None = None,
    memory: str = "",
) -> Iterator[TurnContext]:
    """Bind the turn's time zone, clock, embedder and memory for everything in this context."""
    token = _current.set(TurnContext(timezone=timezone, now=now, embed=embed, memory=memory))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


def current_turn_context() -> TurnContext:
    """The bound `TurnContext`, or the default (UTC, real clock, no embeddings)."""
    return _current.get()

"""Streaming filter for the entity and chart tags in Home answers.

A Home answer reaches the desktop app chunk by chunk, and it may embed tags
the app renders as live components (SPEC §2):

- entity tags ``<task>[id1,id2]</task>``, ``<project>[id]</project>``,
  ``<note>[id]</note>``, ``<timeline>[id]</timeline>``;
- chart tags ``<chart>{"chartType": …, "title": …, "data": […], "config": {…}}</chart>``.

`TagFilter` sits between the model's token stream and the app so that no
invented reference and no malformed chart reaches the UI. Floating answers are
plain text: `PlainTextFilter` applies the same rules but drops even valid
tags, and strips any other markup (``<b>``, ``</div>``) while keeping its words. ``feed(chunk)``
returns the text that is safe to emit now; ``finish()`` returns the rest at
the end of the answer (the filter is then ready for a new answer). Chunk
boundaries never change the result: feeding an answer whole or split at any
points yields the same concatenated output.

Rules:

- **Markers.** ``<task>``, ``<project>``, ``<note>``, ``<timeline>``,
  ``<chart>`` and their closing forms are recognised ASCII case-insensitively
  and emitted in lower case. A tag starts at its complete opening marker.
- **Entity tags.** After the opening marker comes ``[``, ids separated by
  commas, ``]``, then the matching closing marker; whitespace and newlines
  are allowed around every part. An id is unquoted or wrapped in ``"`` or
  ``'``, is non-empty, and contains no whitespace, quote, comma, bracket,
  ``<`` or ``>``. When the closing marker completes, each id is checked
  against ``known_ids`` *at that moment* (so ids a tool returns while the tag
  is streaming count); unknown ids are removed, duplicates collapse, and the
  tag is emitted normalised as ``<task>[a,b]</task>``. A tag left with no ids
  is dropped entirely.
- **Chart tags.** After ``<chart>`` and optional whitespace the body must
  start with ``{``; from there the chart runs to the first ``</chart>``. The
  body must be a JSON object whose ``chartType`` is one of area, bar, line,
  pie, radar, radial; whose ``title``, if present, is a string; whose
  ``data`` is a list of objects; and whose ``config`` is an object mapping
  each data key to ``{"label": str}`` or ``{"label": str, "color": str}`` —
  the shadcn ChartConfig shape. NaN and infinite numbers are rejected. A
  valid chart is re-serialised compactly (ASCII-only, with every ``<``
  written as ``\\u003c``, which ``JSON.parse`` reads back unchanged) so no
  marker can hide inside its strings; an invalid one is dropped entirely.
- **Not a tag.** Text is held back only while it can still become a tag:
  ``a < b``, ``x<y`` and ``<b>bold</b>`` come out as soon as the character
  that rules the tag out arrives, unchanged. Unknown tag names are text. When
  an entity tag, or the whitespace between ``<chart>`` and its ``{``, turns
  out malformed (a nested or mismatched marker, prose after ``<task>``, a
  trailing comma, …), the text after the opening marker is released as text
  and scanning resumes from the first character that could begin a new tag,
  so a well-formed tag nested inside a broken one is still recognised.
- **Stray markers are removed.** A known opening marker that does not begin
  a well-formed tag, and any closing marker that does not end one, is
  dropped rather than released: left in the text, the app's tag parser could
  pair it with other markers and render ids nobody checked
  (``<task> see [fake]`` + ``</task>``). Every known marker in the output
  therefore belongs to a tag this filter validated.
- **Bounds.** An entity tag whose text after the opening marker would exceed
  `ENTITY_TAG_LIMIT` characters is not a tag (released as text as above); the
  same bound applies to the whitespace before a chart's ``{``. A chart body
  longer than `CHART_TAG_LIMIT` characters is dropped; once it is certain to
  be too long it is no longer stored but skipped up to its ``</chart>``, so
  no half-JSON leaks and memory stays bounded.
- **End of answer.** ``finish()`` releases a held partial marker (``<ta``)
  as text and drops an unterminated entity or chart tag — an unclosed
  ``<chart>{`` swallows the rest of the answer rather than leak JSON.

The work is linear in the input: plain text is skipped with ``str.find``,
chart bodies are searched for ``</chart>`` with ``str.find`` across chunk
boundaries, and a failed entity tag re-scans at most its closing-marker
prefix (a dozen characters). No regular expressions are used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container
from enum import Enum, auto

from app.device.calls import entity_ref

# Each entity tag names rows of one desktop table.
TABLE_OF_TAG = {"task": "tasks", "project": "projects", "note": "notes", "timeline": "timelines"}
ENTITY_TAGS = tuple(TABLE_OF_TAG)
CHART_TYPES = frozenset({"area", "bar", "line", "pie", "radar", "radial"})
ENTITY_TAG_LIMIT = 8 * 1024
CHART_TAG_LIMIT = 64 * 1024

_CHART_CLOSE = "</chart>"
_OPENERS = {f"<{name}>": name for name in (*ENTITY_TAGS, "chart")}
_CLOSERS = frozenset(f"</{name}>" for name in (*ENTITY_TAGS, "chart"))
_MARKER_PREFIXES = frozenset(
    marker[:end] for marker in (*_OPENERS, *_CLOSERS) for end in range(1, len(marker) + 1)
)
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_QUOTES = frozenset("\"'")
_NOT_IN_ID = frozenset("\"',[]<>")
_SERIES_KEYS = frozenset({"label", "color"})
_ESCAPED_LT = "\\u003c"  # "<" inside a JSON string, as six characters


class _Mode(Enum):
    TEXT = auto()  # passing text through
    MARKER = auto()  # holding a prefix of a known marker
    ENTITY = auto()  # inside an entity tag
    CHART_START = auto()  # after <chart>, before its "{"
    CHART = auto()  # inside a chart body


class _Pos(Enum):
    BEFORE_LIST = auto()  # expecting "["
    LIST_START = auto()  # after "[": an id or "]"
    ID_START = auto()  # after ",": an id
    ID = auto()  # inside an unquoted id
    QUOTED = auto()  # inside a quoted id
    AFTER_ID = auto()  # expecting "," or "]"
    AFTER_LIST = auto()  # expecting the closing marker
    CLOSING = auto()  # matching the closing marker


class _Step(Enum):
    MORE = auto()
    DONE = auto()
    FAIL = auto()


def _is_id_char(char: str) -> bool:
    return not char.isspace() and char not in _NOT_IN_ID


class _EntityTag:
    """Incremental parser for the text after one entity tag's opening marker."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.table = TABLE_OF_TAG[name]
        self.raw: list[str] = []
        self.ids: list[str] = []
        self._id: list[str] = []
        self._pos = _Pos.BEFORE_LIST
        self._quote = ""
        self._close = f"</{name}>"
        self._close_start = 0
        self._matched = 0

    def step(self, char: str, lower: str) -> _Step:
        """Take one more character; after `FAIL` only `split_on_failure` is meaningful."""
        if len(self.raw) >= ENTITY_TAG_LIMIT:
            return _Step.FAIL
        pos = self._advance(char, lower)
        if pos is None:
            return _Step.FAIL
        self._pos = pos
        self.raw.append(char)
        if pos is _Pos.CLOSING and self._matched == len(self._close):
            return _Step.DONE
        return _Step.MORE

    def _advance(self, char: str, lower: str) -> _Pos | None:
        pos = self._pos
        if pos is _Pos.CLOSING:
            if lower != self._close[self._matched]:
                return None
            self._matched += 1
            return pos
        if pos is _Pos.QUOTED:
            if char == self._quote and self._id:
                self._end_id()
                return _Pos.AFTER_ID
            if not _is_id_char(char):
                return None
            self._id.append(char)
            return pos
        if pos is _Pos.ID:
            if _is_id_char(char):
                self._id.append(char)
                return pos
            self._end_id()
            pos = _Pos.AFTER_ID
        if char.isspace():
            return pos
        if pos is _Pos.BEFORE_LIST:
            return _Pos.LIST_START if char == "[" else None
        if pos is _Pos.AFTER_ID:
            return {",": _Pos.ID_START, "]": _Pos.AFTER_LIST}.get(char)
        if pos is _Pos.AFTER_LIST:
            if char != "<":
                return None
            self._close_start = len(self.raw)
            self._matched = 1
            return _Pos.CLOSING
        # LIST_START or ID_START
        if char in _QUOTES:
            self._quote = char
            return _Pos.QUOTED
        if _is_id_char(char):
            self._id.append(char)
            return _Pos.ID
        return _Pos.AFTER_LIST if char == "]" and pos is _Pos.LIST_START else None

    def _end_id(self) -> None:
        self.ids.append("".join(self._id))
        self._id.clear()

    def split_on_failure(self) -> tuple[str, str]:
        """The text to release, and the held tail that could still begin a tag."""
        cut = self._close_start if self._pos is _Pos.CLOSING else len(self.raw)
        return "".join(self.raw[:cut]), "".join(self.raw[cut:])

    def render(self, known_ids: Container[str]) -> str:
        kept = [i for i in dict.fromkeys(self.ids) if entity_ref(self.table, i) in known_ids]
        if not kept:
            return ""
        return f"<{self.name}>[{','.join(kept)}]</{self.name}>"


def _is_series(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and entry.keys() <= _SERIES_KEYS
        and isinstance(entry.get("label"), str)
        and isinstance(entry.get("color", ""), str)
    )


def _is_valid_chart(chart: object) -> bool:
    if not isinstance(chart, dict):
        return False
    chart_type = chart.get("chartType")
    data = chart.get("data")
    config = chart.get("config")
    return (
        isinstance(chart_type, str)
        and chart_type in CHART_TYPES
        and isinstance(chart.get("title", ""), str)
        and isinstance(data, list)
        and all(isinstance(row, dict) for row in data)
        and isinstance(config, dict)
        and all(_is_series(entry) for entry in config.values())
    )


def _render_chart(body: str) -> str:
    """The chart tag to emit for `body`, or "" when it is not a valid chart."""
    try:
        chart = json.loads(body)
        if not _is_valid_chart(chart):
            return ""
        compact = json.dumps(chart, separators=(",", ":"), allow_nan=False)
    except (ValueError, RecursionError):  # bad JSON, NaN/Infinity, absurd nesting
        return ""
    return f"<chart>{compact.replace('<', _ESCAPED_LT)}</chart>"


class TagFilter:
    """Filters one streamed Home answer; see the module docstring for the rules.

    `known_ids` holds the rows tools returned in this conversation, as
    `entity_ref`s; the caller may keep adding to it while the answer streams
    (a live `set` works), and it is consulted when each entity tag's closing
    marker completes. With `plain`, valid tags are dropped too (Floating).
    """

    def __init__(self, known_ids: Container[str], *, plain: bool = False) -> None:
        self._known_ids = known_ids
        self._plain = plain
        self._out: list[str] = []
        self._mode = _Mode.TEXT
        self._marker = ""
        self._entity = _EntityTag("task")  # replaced at each entity opening marker
        self._chart_lead: list[str] = []
        self._chart_parts: list[str] | None = None
        self._chart_size = 0
        self._chart_tail = ""

    def feed(self, chunk: str) -> str:
        """Take the next chunk of the answer; return the text safe to emit now."""
        self._consume(chunk)
        return self._flush()

    def finish(self) -> str:
        """End the answer: release a partial marker, drop an unterminated tag."""
        if self._mode is _Mode.MARKER:
            self._out.append(self._marker)
        self._mode = _Mode.TEXT
        return self._flush()

    def _flush(self) -> str:
        text = "".join(self._out)
        self._out.clear()
        return text

    def _consume(self, text: str) -> None:
        lower = text.translate(_ASCII_LOWER)
        index, end = 0, len(text)
        while index < end:
            if self._mode is _Mode.TEXT:
                angle = text.find("<", index)
                if angle < 0:
                    self._out.append(text[index:])
                    return
                self._out.append(text[index:angle])
                self._mode = _Mode.MARKER
                self._marker = "<"
                index = angle + 1
            elif self._mode is _Mode.CHART:
                index = self._consume_chart(text, lower, index)
            else:
                self._step(text[index], lower[index])
                index += 1

    def _step(self, char: str, lower: str) -> None:
        if self._mode is _Mode.MARKER:
            self._step_marker(char)
        elif self._mode is _Mode.ENTITY:
            self._step_entity(char, lower)
        else:
            self._step_chart_start(char)

    def _step_marker(self, char: str) -> None:
        marker = self._marker + char
        folded = marker.translate(_ASCII_LOWER)
        if folded not in _MARKER_PREFIXES:
            self._out.append(self._marker)
            self._mode = _Mode.TEXT
            self._consume(char)
        elif folded in _CLOSERS:  # a closing marker that ends no tag
            self._mode = _Mode.TEXT
        elif folded == "<chart>":
            self._mode = _Mode.CHART_START
            self._chart_lead = []
        elif folded in _OPENERS:
            self._mode = _Mode.ENTITY
            self._entity = _EntityTag(_OPENERS[folded])
        else:
            self._marker = marker

    def _step_entity(self, char: str, lower: str) -> None:
        step = self._entity.step(char, lower)
        if step is _Step.DONE:
            if not self._plain:
                self._out.append(self._entity.render(self._known_ids))
            self._mode = _Mode.TEXT
        elif step is _Step.FAIL:
            released, tail = self._entity.split_on_failure()
            self._out.append(released)
            self._mode = _Mode.TEXT
            self._consume(tail + char)

    def _step_chart_start(self, char: str) -> None:
        if char == "{":
            self._mode = _Mode.CHART
            self._chart_parts = ["{"]
            self._chart_size = 1
            self._chart_tail = "{"
        elif char.isspace() and len(self._chart_lead) < ENTITY_TAG_LIMIT:
            self._chart_lead.append(char)
        else:
            self._out.append("".join(self._chart_lead))
            self._mode = _Mode.TEXT
            self._consume(char)

    def _consume_chart(self, text: str, lower: str, index: int) -> int:
        """Consume chart body from `index`; return where the chart's text ends."""
        tail = self._chart_tail
        found = (tail + lower[index : index + len(_CHART_CLOSE) - 1]).find(_CHART_CLOSE)
        if found >= 0:  # the closing marker starts in the previous chunk
            close_end = index + found + len(_CHART_CLOSE) - len(tail)
        else:
            found = lower.find(_CHART_CLOSE, index)
            close_end = found + len(_CHART_CLOSE) if found >= 0 else -1
        if close_end < 0:
            self._chart_size += len(text) - index
            if self._chart_parts is not None:
                # At most the last len(_CHART_CLOSE) - 1 characters can still
                # turn out to be part of the closing marker.
                if self._chart_size - (len(_CHART_CLOSE) - 1) > CHART_TAG_LIMIT:
                    self._chart_parts = None
                else:
                    self._chart_parts.append(text[index:])
            keep = len(_CHART_CLOSE) - 1
            self._chart_tail = (tail + lower[max(index, len(lower) - keep) :])[-keep:]
            return len(text)
        if self._chart_parts is not None:
            self._chart_parts.append(text[index:close_end])
            body = "".join(self._chart_parts)[: -len(_CHART_CLOSE)]
            if len(body) <= CHART_TAG_LIMIT and not self._plain:
                self._out.append(_render_chart(body))
        self._mode = _Mode.TEXT
        return close_end


# HTML-like markup: an element name, then attributes on one line, up to ">".
_MARKUP = re.compile(r"</?[A-Za-z][\w:-]*(?:\s[^<>\n]*)?/?>")
_MARKUP_PREFIX = re.compile(r"</?(?:[A-Za-z][\w:-]*(?:/|\s[^<>\n]*)?)?")
MARKUP_LIMIT = 256


class _MarkupStripper:
    """Removes markup such as ``<b>``, ``</div>`` or ``<br/>`` from a stream of text.

    Text from a ``<`` is held only while it can still be markup (at most
    `MARKUP_LIMIT` characters on one line); ``a < b`` and ``x<y`` pass.
    """

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        out: list[str] = []
        index = 0
        while index < len(text):
            if not self._held:
                angle = text.find("<", index)
                if angle < 0:
                    out.append(text[index:])
                    break
                out.append(text[index:angle])
                self._held, index = "<", angle + 1
                continue
            held = self._held + text[index]
            if text[index] == ">":
                if not _MARKUP.fullmatch(held):
                    out.append(held)
                self._held = ""
                index += 1
            elif len(held) <= MARKUP_LIMIT and _MARKUP_PREFIX.fullmatch(held):
                self._held = held
                index += 1
            else:  # not markup: release it and read this character afresh
                out.append(self._held)
                self._held = ""
        return "".join(out)

    def finish(self) -> str:
        held, self._held = self._held, ""
        return held


class PlainTextFilter:
    """Filters one streamed Floating answer: no tags, no markup, just the words."""

    def __init__(self, known_ids: Container[str]) -> None:
        self._tags = TagFilter(known_ids, plain=True)
        self._markup = _MarkupStripper()

    def feed(self, chunk: str) -> str:
        return self._markup.feed(self._tags.feed(chunk))

    def finish(self) -> str:
        return self._markup.feed(self._tags.finish()) + self._markup.finish()

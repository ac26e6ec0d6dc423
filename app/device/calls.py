"""Client-executed tool calls: ask the request's desktop to run one action.

The device a call goes to is bound per request in a `ContextVar`, so
concurrent requests (each its own asyncio task) never cross: a tool deep
inside a sub-agent just calls `execute_on_client` and reaches the desktop that
asked. Every insert, update and delete that succeeds is recorded for the
request's `stream_end`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from app.device.exceptions import ClientToolError, DeviceOfflineError, ToolCallTimeoutError
from app.device.frames import MUTATING_ACTIONS, Mutation, ToolAction, ToolCall
from app.device.registry import DeviceLink


@dataclass(slots=True)
class CallTarget:
    """Where the tool calls of one request (or batch run) go, and what they changed."""

    link: DeviceLink | None
    timeout_s: float
    request_id: str | None = None
    run_id: str | None = None
    mutations: list[Mutation] = field(default_factory=list)
    # Every row the desktop returned, as `entity_ref`s: the only items the
    # answer may reference, each only as what it is (a task id is no project).
    returned_ids: set[str] = field(default_factory=set)


_current_target: ContextVar[CallTarget | None] = ContextVar("call_target", default=None)


@contextmanager
def calls_go_to(target: CallTarget) -> Iterator[CallTarget]:
    """Bind the device for every `execute_on_client` in this context (and its tasks)."""
    token = _current_target.set(target)
    try:
        yield target
    finally:
        _current_target.reset(token)


def current_target() -> CallTarget | None:
    return _current_target.get()


def _mutation(
    action: ToolAction, table: str, sent: dict[str, Any], result: dict[str, Any]
) -> Mutation:
    # Inserts and updates report the row as the desktop stored it (with its new id);
    # deletes report the id that was deleted.
    row = result.get("row")
    data = row if action is not ToolAction.DELETE and isinstance(row, dict) else sent
    return Mutation(action=action.value, table=table, data=data)


# The desktop's vector index holds notes (`vector_upsert` is only used for them).
VECTOR_INDEX_TABLE = "notes"


def entity_ref(table: str, entity_id: str) -> str:
    """How a returned row is remembered: its table and its id."""
    return f"{table}:{entity_id}"


def _refs_in(action: ToolAction, table: str | None, result: dict[str, Any]) -> Iterator[str]:
    if action in (ToolAction.VECTOR_SEARCH, ToolAction.VECTOR_UPSERT):
        table = VECTOR_INDEX_TABLE
    if table is None:
        return
    rows = [result.get("row"), *(result.get("rows") or []), *(result.get("results") or [])]
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("id"), str | int):
            yield entity_ref(table, str(row["id"]))


async def execute_on_client(
    action: ToolAction | str,
    table: str | None = None,
    data: dict[str, Any] | None = None,
    filters: dict[str, Any] | None = None,
    vector: list[float] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Send one `tool_call` to the bound device and return its result payload.

    Raises a `ToolCallError`: `DeviceOfflineError` when no device is bound,
    `ToolCallTimeoutError` after the target's timeout (the pending entry is
    removed), `DeviceDisconnectedError` or `ToolCallCancelledError` when the
    connection or request ends first, `ClientToolError` when the desktop
    answers with an error.
    """
    target = _current_target.get()
    if target is None or target.link is None:
        raise DeviceOfflineError
    action = ToolAction(action)
    pending = target.link.protocol.pending
    call = pending.open(request_id=target.request_id, run_id=target.run_id)
    frame = ToolCall(
        id=call.id,
        action=action,
        table=table,
        data=data,
        filters=filters,
        vector=vector,
        limit=limit,
        request_id=target.request_id,
        run_id=target.run_id,
    )
    try:
        await target.link.send(frame)
        async with asyncio.timeout(target.timeout_s):
            result = await call.future
    except TimeoutError as exc:
        raise ToolCallTimeoutError(target.timeout_s) from exc
    finally:
        pending.discard(call.id)
    if "error" in result:
        raise ClientToolError(str(result["error"]))
    target.returned_ids.update(_refs_in(action, table, result))
    if action in MUTATING_ACTIONS and table is not None:
        target.mutations.append(_mutation(action, table, data or {}, result))
    return result

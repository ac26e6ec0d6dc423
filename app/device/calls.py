"""Client-executed tool calls: ask the request's desktop to run one action.

Each chat request (or batch run) gets a `CallTarget`: the desktop its calls go
to, and what they changed. The chat layer hands `target.execute` to the tools
through their turn context, so concurrent requests never cross. Every insert,
update and delete that succeeds is recorded for the request's `stream_end`,
and every row the desktop returns for the tag filter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Status, StatusCode

from app.device.link import DeviceLink
from app.observability import metrics
from app.observability.tracing import tracer
from protocol.errors import (
    ClientToolError,
    DeviceDisconnectedError,
    DeviceOfflineError,
    ToolCallCancelledError,
    ToolCallTimeoutError,
    ToolCallTooLargeError,
)
from protocol.frames import MUTATING_ACTIONS, Mutation, Table, ToolAction

# The outcome label of a failed tool call, by its error (a bounded set).
_OUTCOMES: dict[type[Exception], str] = {
    ClientToolError: "client_error",
    DeviceOfflineError: "offline",
    DeviceDisconnectedError: "disconnected",
    ToolCallTimeoutError: "timeout",
    ToolCallCancelledError: "cancelled",
    ToolCallTooLargeError: "too_large",
}

# The desktop's vector index holds notes (`vector_upsert` is only used for them).
VECTOR_INDEX_TABLE = Table.NOTES


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


def _mutation(
    action: ToolAction, table: str, sent: dict[str, Any], result: dict[str, Any]
) -> Mutation:
    # Inserts and updates report the row as the desktop stored it (with its new id);
    # deletes report the id that was deleted.
    row = result.get("row")
    data = row if action is not ToolAction.DELETE and isinstance(row, dict) else sent
    return Mutation(action=action.value, table=table, data=data)


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

    async def execute(
        self,
        action: ToolAction | str,
        table: str | None = None,
        data: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        vector: list[float] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Send one `tool_call` to the target's desktop and return its result payload.

        Raises a `ToolCallError`: `DeviceOfflineError` when there is no
        desktop, `ToolCallTimeoutError` after `timeout_s`,
        `DeviceDisconnectedError` or `ToolCallCancelledError` when the
        connection or request ends first, `ToolCallTooLargeError` when the
        call would not fit in a frame, `ClientToolError` when the desktop
        answers with an error.
        """
        action = ToolAction(action)
        attributes = {"adiuva.tool.action": action.value}
        if table is not None:
            attributes["adiuva.tool.table"] = table
        for key, value in (("adiuva.request_id", self.request_id), ("adiuva.run_id", self.run_id)):
            if value is not None:
                attributes[key] = value
        started = time.perf_counter()
        outcome = "cancelled"  # unless it ends otherwise: the request was cancelled
        with tracer().start_as_current_span(
            "tool_call", attributes=attributes, record_exception=False
        ) as span:
            try:
                result = await self._execute(action, table, data, filters, vector, limit)
                outcome = "ok"
            except Exception as exc:
                outcome = _OUTCOMES.get(type(exc), "error")
                span.set_status(Status(StatusCode.ERROR, outcome))
                raise
            finally:
                metrics.TOOL_CALLS.labels(action.value, outcome).inc()
                metrics.TOOL_CALL_DURATION.labels(action.value).observe(
                    time.perf_counter() - started
                )
        return result

    async def _execute(
        self,
        action: ToolAction,
        table: str | None,
        data: dict[str, Any] | None,
        filters: dict[str, Any] | None,
        vector: list[float] | None,
        limit: int | None,
    ) -> dict[str, Any]:
        if self.link is None:
            raise DeviceOfflineError
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await self.link.call(
                    action,
                    table=table,
                    data=data,
                    filters=filters,
                    vector=vector,
                    limit=limit,
                    request_id=self.request_id,
                    run_id=self.run_id,
                )
        except TimeoutError as exc:
            raise ToolCallTimeoutError(self.timeout_s) from exc
        if "error" in result:
            raise ClientToolError(str(result["error"]))
        self.returned_ids.update(_refs_in(action, table, result))
        if action in MUTATING_ACTIONS and table is not None:
            self.mutations.append(_mutation(action, table, data or {}, result))
        return result

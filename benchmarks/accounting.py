"""What usage accounting and metrics add to one typical chat turn.

    .venv/bin/python -m benchmarks.accounting [--turns 300]

The turn of `benchmarks.turn` (supervisor -> `task` -> task_agent -> one tool
-> answers: 4 model calls, zero-latency scripted model, in-process desktop),
run alternately without and with what the server adds per turn: the ledger
bound to the turn, `UsageCallback` on every model call (metrics, cost, the
role), the turn's summary and histograms, the usage rows handed to the
recorder's queue, and the per-frame and per-tool-call counters for the frames
a streamed turn sends. Alternating the two in one run cancels drift. The
denominator is the in-process turn (~15 ms), far below the ~100 ms of server
time a real turn costs (docs/performance.md), so the share printed is an
upper bound. Target: under 2 %.

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig

import app  # noqa: F401 - sets LITELLM_LOCAL_MODEL_COST_MAP before anything imports litellm
from app.observability import metrics
from app.usage.callbacks import UsageCallback
from app.usage.ledger import UsageLedger, bind_ledger
from benchmarks.turn import ours, typical_turn
from protocol.frames import StreamEnd, StreamStart, StreamText, ToolAction, ToolCall
from tests.llm.fake_chat_model import ScriptedChatModel
from tests.tools.fake_desktop import StoreDesktop

# What a typical streamed turn sends: start, ~20 text chunks, a tool call, the end.
TEXT_FRAMES_PER_TURN = 20


class _QueueOnly:
    """The recorder's `submit` without a database: rows go into a list (its queue)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def submit(self, ledger: UsageLedger) -> None:
        self.rows.extend({"role": call.role, "model": call.model} for call in ledger.calls)
        self.rows.clear()


def _frames(request_id: str) -> list[Any]:
    return [
        StreamStart(request_id=request_id),
        *[StreamText(request_id=request_id, chunk="word ")] * TEXT_FRAMES_PER_TURN,
        ToolCall(id="c1", action=ToolAction.SELECT, table="tasks", request_id=request_id),
        StreamEnd(request_id=request_id),
    ]


async def one_turn(graph: Any, desktop: StoreDesktop, *, accounted: bool) -> int:
    recorder = _QueueOnly()
    started = time.perf_counter_ns()
    config: RunnableConfig = {}
    ledger = UsageLedger(user_id=uuid.UUID(int=1), request_id="bench")
    if accounted:
        config = {"callbacks": [UsageCallback(ledger, prices={})]}
    with desktop.connected(timeout_s=10), bind_ledger(ledger):
        async for _ in graph.astream(
            {"messages": [HumanMessage("What are my tasks?")]},
            config,
            stream_mode=["messages", "updates"],
            subgraphs=True,
        ):
            pass
    if accounted:
        for frame in _frames("bench"):
            metrics.count_sent_frame(frame)
        metrics.TOOL_CALLS.labels("select", "ok").inc()
        metrics.TOOL_CALL_DURATION.labels("select").observe(0.001)
        metrics.observe_turn("home", ledger.summary())
        recorder.submit(ledger)
    return time.perf_counter_ns() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args()

    desktop = StoreDesktop()
    desktop.seed("tasks", title="Invoice ACME")
    graph = ours(ScriptedChatModel(policy=typical_turn, provider="litellm"))
    for warm_up in (False, True):
        await one_turn(graph, desktop, accounted=warm_up)
    plain: list[int] = []
    accounted: list[int] = []
    for _ in range(args.turns):
        plain.append(await one_turn(graph, desktop, accounted=False))
        accounted.append(await one_turn(graph, desktop, accounted=True))

    base = statistics.median(plain) / 1e6
    extra = statistics.median(accounted) / 1e6
    print(f"one typical turn, {args.turns} turns each, alternating, zero-latency scripted model")
    print(f"  without accounting and metrics : p50 {base:6.2f} ms")
    print(f"  with accounting and metrics    : p50 {extra:6.2f} ms")
    print(
        f"  added                          : {extra - base:+.3f} ms = {extra / base - 1:+.1%} "
        "of the in-process turn (target < 2 %; a real turn is ~100 ms of server time)"
    )


if __name__ == "__main__":
    asyncio.run(main())

"""One typical chat turn: the server's own time and the prompt tokens it sends.

    .venv/bin/python -m benchmarks.turn [--turns 200]

A turn is supervisor -> `task` -> sub-agent -> one tool -> sub-agent answer ->
supervisor answer (4 model calls), with a zero-latency scripted model and a
desktop answered in-process from SQLite, so what is timed is the server's
own work. Beside our Home supervisor, in the same run: `create_deep_agent`
with its defaults and the same sub-agents and tools (the baseline). Targets:
at most half the baseline's time, at most 40 % of its prompt tokens, and a
thread's 200th turn within 20 % of its 2nd (our graph, PostgreSQL-free
in-memory checkpointer, bounded history).

Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable

from deepagents import create_deep_agent
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver

import app  # noqa: F401 - sets LITELLM_LOCAL_MODEL_COST_MAP before anything imports litellm
from agents import prompts
from agents.supervisors import SUBAGENTS, Graph, build_supervisors
from app.chat.checkpoint_store import TURN_DURABILITY
from tests.llm.fake_chat_model import ScriptedChatModel
from tests.llm.replies import ReplyLike, ScriptedToolCall, TextReply, estimate_tokens
from tests.tools.fake_desktop import StoreDesktop
from tools.memory import update_core_memory


def typical_turn(messages: list[BaseMessage], tool_names: list[str]) -> ReplyLike:
    """Supervisor delegates to task_agent, which lists tasks once; both then answer."""
    last = messages[-1]
    if "task" in tool_names:
        if isinstance(last, HumanMessage):
            return ScriptedToolCall(
                "task", {"description": "List the user's tasks.", "subagent_type": "task_agent"}
            )
        return TextReply("You have one task: Invoice ACME.")
    if isinstance(last, HumanMessage):
        return ScriptedToolCall("list_tasks", {})
    return TextReply("One task: Invoice ACME.")


def prompt_tokens(model: ScriptedChatModel) -> int:
    """The prompt tokens of every call so far (characters / 4, as the scripted server counts)."""
    total = 0
    for call in model.calls:
        text = json.dumps([m.content for m in call.messages]) + json.dumps(call.tools)
        total += estimate_tokens(len(text))
    return total


def baseline(model: ScriptedChatModel) -> Graph:
    return create_deep_agent(
        model,
        [update_core_memory],
        system_prompt=prompts.HOME_SUPERVISOR,
        subagents=[
            {
                "name": spec.name,
                "description": spec.description,
                "system_prompt": spec.prompt,
                "tools": spec.tools,
            }
            for spec in SUBAGENTS
        ],
    )


def ours(model: ScriptedChatModel, checkpointer: InMemorySaver | None = None) -> Graph:
    return build_supervisors(
        supervisor_model=model, subagent_model=model, checkpointer=checkpointer, max_messages=40
    ).home


async def one_turn(graph: Graph, desktop: StoreDesktop, thread: str | None = None) -> int:
    config: RunnableConfig = {"configurable": {"thread_id": thread}} if thread else {}
    # A thread is checkpointed as the server does it: once, as the turn ends.
    durability = TURN_DURABILITY if thread else None
    started = time.perf_counter_ns()
    with desktop.connected(timeout_s=10):
        async for _ in graph.astream(
            {"messages": [HumanMessage("What are my tasks?")]},
            config,
            stream_mode=["messages", "updates"],
            subgraphs=True,
            durability=durability,
        ):
            pass
    return time.perf_counter_ns() - started


def summary(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    return statistics.median(ordered) / 1e6, ordered[int(len(ordered) * 0.99) - 1] / 1e6


async def measure(
    build: Callable[[ScriptedChatModel], Graph], turns: int
) -> tuple[float, float, float]:
    desktop = StoreDesktop()
    desktop.seed("tasks", title="Invoice ACME")
    model = ScriptedChatModel(policy=typical_turn, provider="litellm")
    graph = build(model)
    await one_turn(graph, desktop)  # warm-up, and the prompt tokens of exactly one turn
    tokens = prompt_tokens(model)
    samples = [await one_turn(graph, desktop) for _ in range(turns)]
    p50, p99 = summary(samples)
    return p50, p99, tokens


async def thread_growth(turns: int) -> tuple[float, float]:
    desktop = StoreDesktop()
    desktop.seed("tasks", title="Invoice ACME")
    model = ScriptedChatModel(policy=typical_turn, provider="litellm")
    graph = ours(model, InMemorySaver())
    samples = [await one_turn(graph, desktop, thread="long") for _ in range(turns)]
    window = max(5, turns // 10)
    early = statistics.median(samples[1 : 1 + window]) / 1e6
    late = statistics.median(samples[-window:]) / 1e6
    return early, late


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    args = parser.parse_args()

    base_p50, base_p99, base_tokens = await measure(baseline, args.turns)
    our_p50, our_p99, our_tokens = await measure(ours, args.turns)
    early, late = await thread_growth(args.turns)

    print(f"one typical turn, {args.turns} turns each, zero-latency scripted model")
    for label, p50, p99, tokens in (
        ("create_deep_agent defaults", base_p50, base_p99, base_tokens),
        ("Home supervisor (ours)    ", our_p50, our_p99, our_tokens),
    ):
        print(f"  {label} : p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  prompt tokens {tokens}")
    print(
        f"  ours / defaults            : time {our_p50 / base_p50:.0%} (target <= 50%)  "
        f"prompt tokens {our_tokens / base_tokens:.0%} (target <= 40%)"
    )
    print(f"one thread growing over {args.turns} turns (ours, checkpointed, history bounded)")
    print(
        f"  p50 near turn 2 {early:6.1f} ms, near turn {args.turns} {late:6.1f} ms: "
        f"{late / early - 1:+.0%} (target within +20%)"
    )


if __name__ == "__main__":
    asyncio.run(main())

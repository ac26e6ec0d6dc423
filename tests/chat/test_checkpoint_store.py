"""Thread storage stays flat: the real supervisor graph on a real PostgreSQL checkpointer.

In process with the scripted chat model, so a 200-turn thread takes seconds;
the checkpointer is the one the server builds (pruning, encrypted values).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet
from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.types import Durability
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from agents.supervisors import Supervisors, build_supervisors
from app.chat.checkpoint_cipher import encrypted_serializer
from app.chat.checkpoint_store import TURN_DURABILITY, LatestCheckpointSaver
from app.core.database_urls import libpq_url
from tests.llm.fake_chat_model import ScriptedChatModel
from tests.llm.replies import ReplyLike, ScriptedToolCall, TextReply

HISTORY_MAX_MESSAGES = 40
ANSWER = "Here is what I found. " * 50  # about 1 KB, so the history has some weight


def policy(messages: list[BaseMessage], tool_names: list[str]) -> ReplyLike:
    """Answer directly; a message ending in "0" goes through a sub-agent first."""
    last = messages[-1]
    if "task" not in tool_names:
        return TextReply("Sub-agent report. " + ANSWER)
    if isinstance(last, HumanMessage) and last.text.endswith("0"):
        return ScriptedToolCall("task", {"description": last.text, "subagent_type": "note_agent"})
    return TextReply(ANSWER)


@dataclass
class Chat:
    supervisors: Supervisors
    model: ScriptedChatModel
    pool: AsyncConnectionPool[Any]

    async def turn(self, thread: str, message: str, durability: Durability) -> None:
        """Run one Home turn the way the chat service streams it."""
        async for _ in self.supervisors.home.astream(
            {"messages": [HumanMessage(message)]},
            {"configurable": {"thread_id": thread}},
            stream_mode=["messages", "updates"],
            subgraphs=True,
            durability=durability,
        ):
            pass

    async def turns(self, thread: str, numbers: range, durability: Durability) -> None:
        for number in numbers:
            await self.turn(thread, f"turn {number}", durability)

    async def storage(self, thread: str) -> dict[str, int]:
        """Rows per checkpoint table and the bytes they hold, for one thread."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                """
                SELECT
                    (SELECT count(*) FROM checkpoints WHERE thread_id = %(t)s) AS checkpoints,
                    (SELECT count(*) FROM checkpoint_blobs WHERE thread_id = %(t)s) AS blobs,
                    (SELECT count(*) FROM checkpoint_writes WHERE thread_id = %(t)s) AS writes,
                    (SELECT coalesce(sum(octet_length(checkpoint::text)), 0)
                        FROM checkpoints WHERE thread_id = %(t)s)
                    + (SELECT coalesce(sum(octet_length(blob)), 0)
                        FROM checkpoint_blobs WHERE thread_id = %(t)s)
                    + (SELECT coalesce(sum(octet_length(blob)), 0)
                        FROM checkpoint_writes WHERE thread_id = %(t)s) AS bytes
                """,
                {"t": thread},
            )
            row = await cursor.fetchone()
        assert row is not None
        return {key: int(value) for key, value in row.items()}

    async def rows(self, thread: str) -> list[tuple[Any, ...]]:
        """Every stored row of a thread, to tell whether anything changed."""
        async with self.pool.connection() as conn:
            found: list[tuple[Any, ...]] = []
            for query in (
                "SELECT checkpoint_ns, checkpoint_id, checkpoint::text FROM checkpoints"
                " WHERE thread_id = %s ORDER BY 1, 2",
                "SELECT checkpoint_ns, channel, version, md5(blob) FROM checkpoint_blobs"
                " WHERE thread_id = %s ORDER BY 1, 2, 3",
                "SELECT checkpoint_id, task_id, idx, md5(blob) FROM checkpoint_writes"
                " WHERE thread_id = %s ORDER BY 1, 2, 3",
            ):
                cursor = await conn.execute(query, (thread,))
                found += [tuple(row.values()) for row in await cursor.fetchall()]
        return found

    async def namespaces(self) -> set[str]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute("SELECT DISTINCT checkpoint_ns FROM checkpoints")
            return {row["checkpoint_ns"] for row in await cursor.fetchall()}


@pytest.fixture
async def chat(database_url: str) -> AsyncIterator[Chat]:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        libpq_url(database_url),
        open=False,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    await pool.open()
    try:
        keys = MultiFernet([Fernet(Fernet.generate_key())])
        saver = LatestCheckpointSaver(pool, serde=encrypted_serializer(keys))
        await saver.setup()
        model = ScriptedChatModel(policy=policy, provider="litellm")
        supervisors = build_supervisors(
            supervisor_model=model,
            subagent_model=model,
            checkpointer=saver,
            max_messages=HISTORY_MAX_MESSAGES,
        )
        yield Chat(supervisors=supervisors, model=model, pool=pool)
    finally:
        await pool.close()


async def test_thread_storage_stays_flat_over_200_turns_and_the_thread_resumes(
    chat: Chat,
) -> None:
    await chat.turns("other", range(1, 4), TURN_DURABILITY)
    other_before = await chat.rows("other")

    await chat.turns("long", range(1, 11), TURN_DURABILITY)
    after_10 = await chat.storage("long")
    await chat.turns("long", range(11, 201), TURN_DURABILITY)
    after_200 = await chat.storage("long")

    for measure in ("checkpoints", "blobs", "writes", "bytes"):
        assert after_200[measure] <= 2 * after_10[measure], (measure, after_10, after_200)
    assert after_200["checkpoints"] == 1
    assert await chat.namespaces() == {""}  # sub-agents leave no checkpoints of their own
    assert await chat.rows("other") == other_before  # pruning is per thread

    await chat.turn("long", "turn 201", TURN_DURABILITY)

    prompt = [m.text for m in chat.model.calls[-1].messages if isinstance(m, HumanMessage)]
    assert prompt[-3:] == ["turn 199", "turn 200", "turn 201"]
    assert "turn 150" not in prompt  # bounded, but resumed from the stored thread
    assert len(chat.model.calls[-1].messages) <= HISTORY_MAX_MESSAGES + 2


async def test_a_thread_checkpointed_at_every_step_is_pruned_too(chat: Chat) -> None:
    await chat.turns("steps", range(8, 12), "async")

    stored = await chat.storage("steps")
    state = await chat.supervisors.home.aget_state({"configurable": {"thread_id": "steps"}})

    assert stored["checkpoints"] == 1
    assert [m.text for m in state.values["messages"] if isinstance(m, HumanMessage)] == [
        "turn 8",
        "turn 9",
        "turn 10",
        "turn 11",
    ]

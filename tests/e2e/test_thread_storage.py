"""The server keeps one checkpoint per conversation thread, however many turns it has."""

from __future__ import annotations

from sqlalchemy import text

from tests.e2e.conftest import Live


async def checkpoints_by_thread(live: Live) -> dict[str, int]:
    async with live.app.state.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT thread_id, count(*) FROM checkpoints GROUP BY thread_id")
        )
        return {thread: int(count) for thread, count in rows.all()}


async def test_each_thread_keeps_only_its_latest_checkpoint(assistant: Live) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    assistant.policy.plan("list my notes", agent="note_agent", tool="list_notes", args={})

    for message in ("hello", "list my notes", "thanks"):
        await client.chat(message, thread_id="kept")
    await client.chat("hello", thread_id="other")
    answer = await client.chat("one more", thread_id="kept")

    assert answer.errors == []
    assert await checkpoints_by_thread(assistant) == {
        f"{account.user_id}:thread:kept": 1,
        f"{account.user_id}:thread:other": 1,
    }
    said = [m.text for m in assistant.llm.requests[-1].messages if m.role == "user"]  # type: ignore[union-attr]
    assert said == ["hello", "list my notes", "thanks", "one more"]

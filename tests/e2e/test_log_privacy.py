"""LOG_LEVEL=DEBUG writes no message text, memory, prompts, tokens or keys.

A real turn through the live server (device socket, LiteLLM to the scripted
model, a tool on the devclient desktop) with the server's logging configured
at DEBUG; every line its handler writes is read back. The server, the model
and the desktop all run in this process, so their libraries log here too.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from agents import prompts
from tests.core.configured_logging import configured_logging
from tests.e2e.conftest import Live

# Short markers at the start of a message fit in a WebSocket frame preview.
MESSAGE = "mk-5f1c remember my codename"
REMEMBERED = "memory-marker-a83e"
DESKTOP_DATA = "desktop-marker-77d2"
LATER_MESSAGE = "mk-9b04 list my tasks"
FRAME_PREVIEW = re.compile(r"^[<>] (TEXT|BINARY|CONT) ")


@pytest.fixture
def debug_log(assistant: Live) -> Iterator[io.StringIO]:
    """The server's logging configured at DEBUG once the servers run, writing here."""
    # The scripted model's uvicorn (log_level="warning") set the level of the
    # uvicorn.error logger this process shares; the real server leaves it unset.
    uvicorn_error = logging.getLogger("uvicorn.error")
    scripted_level = uvicorn_error.level
    uvicorn_error.setLevel(logging.NOTSET)
    try:
        with configured_logging("DEBUG") as stream:
            yield stream
    finally:
        uvicorn_error.setLevel(scripted_level)


async def test_a_turn_at_debug_logs_no_content_or_secrets(
    assistant: Live, debug_log: io.StringIO
) -> None:
    account = await assistant.account()
    client = await assistant.desktop(account)
    client.store.execute(action="insert", table="tasks", data={"title": DESKTOP_DATA})
    assistant.policy.plan(MESSAGE, memory=("codename", REMEMBERED))
    assistant.policy.plan(LATER_MESSAGE, agent="task_agent", tool="list_tasks", args={})

    await client.chat(MESSAGE)
    answer = await client.chat(LATER_MESSAGE)

    # The content did travel: socket, tool, model (with memory in its prompt), answer.
    assert DESKTOP_DATA in answer.text
    assert REMEMBERED in assistant.llm.requests[-1].system_prompt  # type: ignore[union-attr]
    lines: list[dict[str, Any]] = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    logged = debug_log.getvalue()
    for secret in (
        "mk-5f1c",
        "mk-9b04",
        REMEMBERED,
        DESKTOP_DATA,
        prompts.HOME_SUPERVISOR[:60],
        account.token,
        account.refresh_token,
        "test-key",  # the model provider's API key
    ):
        assert secret not in logged, secret
    assert [line for line in lines if FRAME_PREVIEW.match(line["message"])] == []
    # DEBUG was on for the server's own loggers, and uvicorn still says what it accepted.
    assert any(line["level"] == "DEBUG" and line["logger"].startswith("app.") for line in lines)
    assert any('"WebSocket /api/v1/ws/device?' in line["message"] for line in lines)

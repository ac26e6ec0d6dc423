"""Libraries that log content stay capped, even when they switch their own debug output on."""

from __future__ import annotations

import json
import logging

import litellm
import pytest
from openai._utils._logs import setup_logging as openai_setup_logging

from tests.core.configured_logging import configured_logging

# A logger of each capped library, as the library names it.
LIBRARY_LOGGERS = (
    "openai._base_client",
    "LiteLLM",
    "LiteLLM Router",
    "httpx",
    "httpcore.http11",
    "hpack.hpack",
    "websockets.client",
    "uvicorn.error",
    "uvicorn.asgi",
    "langchain_core.callbacks.manager",
    "langgraph.pregel",
    "deepagents.middleware",
    "psycopg.pool",
    "sqlalchemy.engine.Engine",
    "python_multipart.multipart",
)


def test_library_debug_stays_out_even_after_the_library_turns_it_back_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with configured_logging("DEBUG") as out:
        # What OPENAI_LOG=debug does when openai is imported, and LiteLLM's debug switch.
        monkeypatch.setenv("OPENAI_LOG", "debug")
        openai_setup_logging()
        litellm._turn_on_debug()
        logging.getLogger("uvicorn.error").setLevel(logging.DEBUG)  # uvicorn --log-level debug
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).debug("user text from %s", name)
            if not name.startswith("uvicorn"):  # uvicorn keeps its INFO lines
                logging.getLogger(name).info("user text from %s", name)
        logging.getLogger("app.chat.service").debug("our own debug line")
        logging.getLogger("openai._base_client").warning("a library warning")

    logged = out.getvalue()
    assert "user text" not in logged
    assert "our own debug line" in logged
    assert "a library warning" in logged


def test_litellm_loses_its_own_stderr_handler() -> None:
    # LiteLLM attaches a handler at import whose level comes from LITELLM_LOG
    # (DEBUG by default); records must go through the server's handler alone.
    with configured_logging("DEBUG"):
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            library = logging.getLogger(name)
            assert (library.handlers, library.propagate) == ([], True)


def test_a_clients_invalid_utf8_is_a_warning_without_a_traceback() -> None:
    # uvicorn logs it with `logger.exception` once per connection: a client that
    # reconnects in a loop would fill the log with tracebacks.
    with configured_logging("INFO") as out:
        try:
            b"\xff".decode()
        except UnicodeDecodeError:
            logging.getLogger("uvicorn.error").exception(
                "Invalid UTF-8 sequence received from client."
            )
            logging.getLogger("uvicorn.error").exception("a fault of the server's own")

    client_fault, server_fault = (json.loads(line) for line in out.getvalue().splitlines())
    assert (client_fault["level"], "exception" in client_fault) == ("WARNING", False)
    assert (server_fault["level"], "exception" in server_fault) == ("ERROR", True)

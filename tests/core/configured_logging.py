"""The server's logging configuration inside a test, undone afterwards.

`configure_logging` changes process-wide state (the root handler, library
loggers); tests that call it read what its handler writes and then put every
logger back as it was, so the tests after them see pytest's usual logging.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from app.core.logging import configure_logging


@dataclass(frozen=True)
class _LoggerState:
    level: int
    handlers: list[logging.Handler]
    propagate: bool
    disabled: bool


def _logger_states() -> dict[str, _LoggerState]:
    return {
        name: _LoggerState(logger.level, list(logger.handlers), logger.propagate, logger.disabled)
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }


@contextmanager
def configured_logging(level: str) -> Iterator[io.StringIO]:
    """`configure_logging(level)`, its handler writing to the stream yielded."""
    root = logging.getLogger()
    before, root_level, root_handlers = _logger_states(), root.level, list(root.handlers)
    stream = io.StringIO()
    stderr, sys.stderr = sys.stderr, stream  # where configure_logging's handler writes
    try:
        configure_logging(level)
    finally:
        sys.stderr = stderr
    [handler] = root.handlers
    try:
        yield stream
    finally:
        # pytest adds and removes its capture handlers per test phase: take only
        # ours away and give back what configure_logging dropped.
        root.removeHandler(handler)
        root.handlers.extend(h for h in root_handlers if h not in root.handlers)
        root.setLevel(root_level)
        for name, state in before.items():
            logger = logging.getLogger(name)
            logger.setLevel(state.level)
            logger.handlers[:] = state.handlers
            logger.propagate, logger.disabled = state.propagate, state.disabled

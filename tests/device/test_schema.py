"""The checked-in JSON Schema is the one the frame models produce."""

from __future__ import annotations

from pathlib import Path

from app.device.schema import render

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "device-protocol.schema.json"


def test_checked_in_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == render(), "stale: run `make schema` and commit the result"


def test_schema_names_every_frame_type() -> None:
    text = SCHEMA_FILE.read_text()
    for frame_type in (
        "device_hello", "home_request", "floating_request", "tool_result", "agent_data",
        "agent_complete", "cancel", "ping", "pong", "stream_start", "stream_text",
        "stream_end", "floating_domain", "tool_call", "agent_run", "error",
    ):  # fmt: skip
        assert f'"const": "{frame_type}"' in text, frame_type

"""The published JSON Schema and TypeScript types are valid, complete and up to date."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from protocol.frames import ErrorCode, Table
from protocol.schema import render

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA_FILE = DOCS / "device-protocol.schema.json"
TYPES_FILE = DOCS / "device-protocol.d.ts"
PROTOCOL_PAGE = DOCS / "protocol.md"

SCHEMA: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())


def _validator(union: str | None = None) -> Draft202012Validator:
    """The root schema, or one of its `$defs` unions with the whole document around it."""
    if union is None:
        return Draft202012Validator(SCHEMA)
    return Draft202012Validator({**SCHEMA, "anyOf": [{"$ref": f"#/$defs/{union}"}]})


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(pointer: str) -> object:
    """Follow a `#/…` JSON Pointer (RFC 6901) from the root of the document."""
    assert pointer.startswith("#/"), f"{pointer} is not a reference into this document"
    node: Any = SCHEMA
    for token in pointer.removeprefix("#/").split("/"):
        node = node[token.replace("~1", "/").replace("~0", "~")]
    return node


_SECTIONS = {"client → server": "ClientFrame", "server → client": "ServerFrame"}


def _protocol_examples() -> Iterator[tuple[str | None, str]]:
    """Every line of the ```json blocks of docs/protocol.md, with the direction of its
    section (`ClientFrame` under "Client → server", `ServerFrame` under "Server → client")."""
    union: str | None = None
    fence: str | None = None  # the language of the open ``` block, if one is open
    for line in PROTOCOL_PAGE.read_text().splitlines():
        if line.startswith("```"):
            fence = line.removeprefix("```").strip() if fence is None else None
        elif fence is None and line.startswith("#"):
            heading = line.lower()
            union = next((u for title, u in _SECTIONS.items() if title in heading), None)
        elif fence == "json" and line.strip():
            yield union, line


EXAMPLES = list(_protocol_examples())


def test_checked_in_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text() == render(), "stale: run `make schema` and commit the result"


def test_schema_is_a_valid_2020_12_document() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(SCHEMA)


def test_every_ref_resolves_from_the_root() -> None:
    refs = set(_refs(SCHEMA))
    assert {"#/$defs/ClientFrame", "#/$defs/ServerFrame", "#/$defs/ErrorCode"} <= refs
    for ref in refs:
        assert isinstance(_resolve(ref), dict), ref
    for union in ("ClientFrame", "ServerFrame"):
        for ref in SCHEMA["$defs"][union]["discriminator"]["mapping"].values():
            assert isinstance(_resolve(ref), dict), ref


def test_schema_names_every_frame_type() -> None:
    text = SCHEMA_FILE.read_text()
    for frame_type in (
        "device_hello", "home_request", "floating_request", "tool_result", "agent_data",
        "agent_complete", "cancel", "ping", "pong", "stream_start", "stream_text",
        "stream_end", "floating_domain", "tool_call", "agent_run", "error",
    ):  # fmt: skip
        assert f'"const": "{frame_type}"' in text, frame_type


def test_protocol_page_has_examples_of_both_directions() -> None:
    assert {union for union, _ in EXAMPLES} >= {"ClientFrame", "ServerFrame"}


@pytest.mark.parametrize(
    ("union", "line"),
    EXAMPLES,
    ids=[f"{union or 'either'}-{n}" for n, (union, _) in enumerate(EXAMPLES, start=1)],
)
def test_every_example_of_the_protocol_page_validates(union: str | None, line: str) -> None:
    frame = json.loads(line)
    _validator().validate(frame)
    if union is not None:
        _validator(union).validate(frame)


@pytest.mark.parametrize(
    ("union", "frame"),
    [
        ("ServerFrame", {"type": "error", "code": "no_such_code", "message": "?"}),
        ("ServerFrame", {"type": "tool_call", "id": "c-1", "action": "select", "table": "users"}),
        (
            "ServerFrame",
            {
                "type": "stream_end",
                "request_id": "r-1",
                "mutations": [{"action": "delete", "table": "users", "data": {"id": "u-1"}}],
            },
        ),
        ("ServerFrame", {"request_id": "r-1"}),  # no `type`
        ("ClientFrame", {"type": "stream_start", "request_id": "r-1"}),  # wrong direction
        ("ClientFrame", {"type": "floating_request", "message": "?", "scope": {"type": "user"}}),
    ],
    ids=["error-code", "tool-call-table", "mutation-table", "no-type", "direction", "scope"],
)
def test_schema_rejects_what_the_enums_and_unions_rule_out(
    union: str, frame: dict[str, Any]
) -> None:
    assert not _validator(union).is_valid(frame)


def test_every_error_code_and_table_is_accepted() -> None:
    server = _validator("ServerFrame")
    for code in ErrorCode:
        assert server.is_valid({"type": "error", "code": code.value, "message": "m"}), code
    for table in Table:
        call = {"type": "tool_call", "id": "c-1", "action": "select", "table": table.value}
        assert server.is_valid(call), table


def test_typescript_types_were_generated_from_the_current_schema() -> None:
    header = re.search(r"schema sha256: ([0-9a-f]{64})", TYPES_FILE.read_text())
    assert header is not None, "no schema hash in the header: run `make types`"
    current = hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest()
    assert header.group(1) == current, "stale: run `make types` and commit the result"


@pytest.mark.parametrize(
    ("name", "members"),
    [("ErrorCode", [c.value for c in ErrorCode]), ("Table", [t.value for t in Table])],
)
def test_typescript_types_declare_the_enums_as_string_literal_unions(
    name: str, members: list[str]
) -> None:
    declaration = re.search(rf"export type {name} =([^;]*);", TYPES_FILE.read_text())
    assert declaration is not None, name
    assert re.findall(r'"([^"]*)"', declaration.group(1)) == members


def test_typescript_types_declare_both_frame_unions() -> None:
    text = TYPES_FILE.read_text()
    for union in ("ClientFrame", "ServerFrame"):
        assert f"export type {union} =" in text, union
    for frame in ("DeviceHello", "ToolResult", "ToolCall", "StreamEnd", "Error"):
        assert f"export interface {frame} {{" in text, frame

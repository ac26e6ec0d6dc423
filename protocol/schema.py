"""The device protocol's JSON Schema: one 2020-12 document of every frame.

`make schema` prints it to `docs/device-protocol.schema.json`; `make types` turns
that file into the desktop app's TypeScript types (`docs/device-protocol.d.ts`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from protocol.frames import client_frame_adapter, server_frame_adapter

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_UNION_DESCRIPTIONS = {
    "ClientFrame": "A frame the desktop sends to the server.",
    "ServerFrame": "A frame the server sends to the desktop; ping and pong go both ways.",
}


class _ProtocolJsonSchema(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: object) -> bool:
        # A field title ("Run Id") says nothing its name does not, and each one would
        # become a TypeScript alias of its own (`RunId1`, `Type13`, …) in the types.
        return False


def protocol_json_schema() -> dict[str, Any]:
    """Every model and enum under `$defs`, the two unions as `$defs/ClientFrame` and
    `$defs/ServerFrame`, and the root accepting a frame of either direction."""
    unions, definitions = TypeAdapter.json_schemas(
        [
            ("ClientFrame", "validation", client_frame_adapter),
            ("ServerFrame", "validation", server_frame_adapter),
        ],
        ref_template="#/$defs/{model}",
        schema_generator=_ProtocolJsonSchema,
    )
    defs: dict[str, Any] = definitions["$defs"]
    for (name, _mode), union in unions.items():
        # `type` has a default in Python, but the discriminator is always on the wire.
        for ref in union["discriminator"]["mapping"].values():
            required = defs[ref.removeprefix("#/$defs/")].setdefault("required", [])
            if "type" not in required:
                required.insert(0, "type")
        defs[name] = {"title": name, "description": _UNION_DESCRIPTIONS[name], **union}
    return {
        "$schema": DIALECT,
        "title": "Adiuva device WebSocket protocol",
        "description": "One frame of the device WebSocket (docs/protocol.md), either direction.",
        "anyOf": [{"$ref": "#/$defs/ClientFrame"}, {"$ref": "#/$defs/ServerFrame"}],
        "$defs": defs,
    }


def render() -> str:
    """The schema as checked in: sorted keys, two-space indent, a final newline."""
    return json.dumps(protocol_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")

"""Print the device protocol's JSON Schema (`make schema` writes it to docs/)."""

from __future__ import annotations

import json

from app.device.frames import protocol_json_schema


def render() -> str:
    return json.dumps(protocol_json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")

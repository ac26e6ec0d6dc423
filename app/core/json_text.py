"""Text in parsed JSON that cannot be sent on: lone UTF-16 surrogates.

JSON may escape half of a surrogate pair alone (`"\\ud800"`); `json.loads`
gives it back as a Python string that no UTF-8 encoder takes, so it fails
wherever the text is next encoded (a model provider's request, a log line),
far from the request that brought it. A JSON document itself is valid UTF-8,
so only such an escape can put one there.
"""

from __future__ import annotations

import re

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def may_hold_lone_surrogate(json_text: str) -> bool:
    """Cheap test of the raw JSON: only an escape from `\\uD800` to `\\uDFFF` makes one."""
    return _SURROGATE_ESCAPE.search(json_text) is not None


def holds_lone_surrogate(value: object) -> bool:
    """Whether a string in `value` (keys included) holds a lone surrogate.

    Walked without recursion, like `nests_deeper_than`, and cheap for ASCII.
    """
    pending: list[object] = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False

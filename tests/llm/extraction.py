"""A scripted model for batch extraction: what it finds in each file, decided by the test.

The server asks once per piece of a file with a forced tool call (structured
output); `ExtractionScript` answers that call with the items a test put under
the file's name (none by default), or fails with HTTP 500 for names in
`failing`. It is a policy for `tests.llm.scripted_openai.scripted_llm`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.llm.scripted_openai import ChatRequest, ErrorReply, ReplyLike, ScriptedToolCall

_FILE_LINE = re.compile(r"^File: (?P<name>.+?)(?: \(part (?P<part>\d+) of \d+\))?$", re.MULTILINE)


def file_asked(request: ChatRequest) -> str:
    """The name of the file an extraction request is about."""
    found = _FILE_LINE.search(request.last_message.text)
    assert found is not None, "not an extraction request"
    return found.group("name")


@dataclass
class ExtractionScript:
    items: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)

    def __call__(self, request: ChatRequest) -> ReplyLike:
        name = file_asked(request)
        if name in self.failing:
            return ErrorReply(500, "scripted model failure")
        [tool] = request.tools
        return ScriptedToolCall(tool.name, dict(self.items.get(name, {})))

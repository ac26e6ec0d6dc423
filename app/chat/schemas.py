"""Bodies of the REST chat fallback."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, field_validator

from app.core.json_depth import nests_deeper_than
from app.core.json_text import holds_lone_surrogate
from protocol.frames import MAX_MESSAGE_CHARS, Mutation, TurnUsage

MAX_CONTEXT_BYTES = 16 * 1024
MAX_CONTEXT_DEPTH = 32
NOT_UNICODE = "text that is not valid Unicode (a lone UTF-16 surrogate) cannot be sent on"


def json_size(value: object) -> int:
    """Bytes of `value` as compact UTF-8 JSON (lone surrogates counted, not refused)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(text.encode(errors="surrogatepass"))


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    context: dict[str, Any] | None = Field(
        default=None,
        description="What the app is showing, passed to the assistant as-is: at most "
        f"{MAX_CONTEXT_BYTES} bytes as compact UTF-8 JSON, nested at most "
        f"{MAX_CONTEXT_DEPTH} levels deep (larger or deeper is refused with 422).",
    )

    @field_validator("context")
    @classmethod
    def _bounded(cls, context: dict[str, Any] | None) -> dict[str, Any] | None:
        if context is None:
            return None
        if nests_deeper_than(context, MAX_CONTEXT_DEPTH):
            msg = f"context is limited to {MAX_CONTEXT_DEPTH} levels of nesting"
            raise ValueError(msg)
        if json_size(context) > MAX_CONTEXT_BYTES:
            msg = f"context is limited to {MAX_CONTEXT_BYTES} bytes of JSON"
            raise ValueError(msg)
        if holds_lone_surrogate(context):
            raise ValueError(NOT_UNICODE)
        return context


class ChatResponse(BaseModel):
    response: str
    mutations: list[Mutation]
    usage: TurnUsage | None = Field(
        default=None,
        description="The answer's model calls, tokens, cost and timing, as in `stream_end`.",
    )

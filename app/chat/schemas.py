"""Bodies of the REST chat fallback."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.device.frames import MAX_MESSAGE_CHARS, Mutation


class ChatRequest(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    context: dict[str, Any] | None = Field(
        default=None, description="What the app is showing, passed to the assistant as-is."
    )


class ChatResponse(BaseModel):
    response: str
    mutations: list[Mutation]

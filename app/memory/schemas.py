"""Bodies of the memory and embedding endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class MemoryCounts(BaseModel):
    core: int
    associative: int
    episodic: int
    proactive: int


class MemoryOverview(BaseModel):
    core: dict[str, str] = Field(description="The user's remembered preferences, decrypted.")
    counts: MemoryCounts


class EmbedRequest(BaseModel):
    text: str

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            msg = "text must not be empty"
            raise ValueError(msg)
        return text


class EmbedResponse(BaseModel):
    vector: list[float]

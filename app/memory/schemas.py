"""Bodies of the memory and embedding endpoints."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.memory.embeddings import MAX_EMBED_CHARS

# At least one character that is not ASCII whitespace. An explicit class, not `\S`:
# the server's regex engine and JSON Schema's (ECMA-262) disagree on what else `\s` holds.
NOT_BLANK = r"[^\t\n\v\f\r ]"


class MemoryCounts(BaseModel):
    core: int
    associative: int
    episodic: int
    proactive: int


class MemoryOverview(BaseModel):
    core: dict[str, str] = Field(description="The user's remembered preferences, decrypted.")
    counts: MemoryCounts


class EmbedRequest(BaseModel):
    text: str = Field(
        min_length=1,
        pattern=NOT_BLANK,
        # Only declared: `embed` refuses longer text itself, with 413 and the limit in words.
        json_schema_extra={"maxLength": MAX_EMBED_CHARS},
        description=f"The text to embed: at most {MAX_EMBED_CHARS:,} characters (longer "
        "is refused with 413), not only whitespace.",
    )


class EmbedResponse(BaseModel):
    vector: list[float]

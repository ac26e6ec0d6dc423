"""Clipping remembered text to a size, shared by what is stored and what is shown."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """`text` on one line (runs of whitespace made one space), at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""What the supervisor's prompt gets from memory: one block of text within a budget."""

from __future__ import annotations

from app.memory._text import clip
from app.memory.recall import Recall

ITEM_CHARS = 400  # no single remembered item may take more of the prompt than this
MIN_CLIPPED_CHARS = 40


def render_context(memory: Recall, *, budget_chars: int) -> str:
    """The memory block for the prompt: sections in order of importance, within budget.

    Core preferences first, then habits, then similar past exchanges, then the
    latest episodes; each item is clipped, and items that no longer fit are left
    out, so the block never exceeds `budget_chars`.
    """
    sections = [
        ("What the user asked you to remember", [f"{k}: {v}" for k, v in memory.core.items()]),
        ("Habits you have noticed", memory.patterns),
        ("Earlier exchanges similar to this message", memory.similar),
        ("Recent exchanges", memory.episodes),
    ]
    lines: list[str] = []
    used = 0
    for title, items in sections:
        if not items:
            continue
        header = f"{title}:"
        if used + len(header) + 1 > budget_chars:
            break
        section = [header]
        size = len(header) + 1
        for item in items:
            room = budget_chars - used - size - 1
            line = "- " + clip(item, ITEM_CHARS)
            if len(line) > room:
                # Clip the last item into the space left, unless that leaves a stub.
                if room >= MIN_CLIPPED_CHARS:
                    section.append(clip(line, room))
                    size += room + 1
                break
            section.append(line)
            size += len(line) + 1
        if len(section) > 1:
            lines.extend(section)
            used += size
    return "\n".join(lines)

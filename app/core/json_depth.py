"""How deep parsed JSON nests: the one check behind every nesting limit."""

from __future__ import annotations


def nests_deeper_than(value: object, limit: int) -> bool:
    """Whether objects and arrays in `value` nest more than `limit` levels.

    Walked without recursion: input parsed nearly to the interpreter's
    recursion limit would overflow a recursive walk.
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False

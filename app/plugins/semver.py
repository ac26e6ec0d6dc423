"""Semantic Versioning 2.0.0 precedence (semver.org §11): which of two versions is higher."""

from __future__ import annotations

from app.plugins.schemas import SEMVER

# Numeric identifiers rank below alphanumeric ones (§11.4.3): (0, n) < (1, "text").
_Identifier = tuple[int, int | str]


def precedence(version: str) -> tuple[int, int, int, int, tuple[_Identifier, ...]]:
    """A sort key: higher versions sort later; build metadata is ignored (§10).

    A release ranks above its pre-releases (1.0.0-rc.1 < 1.0.0), hence the flag.
    """
    match = SEMVER.match(version)
    if match is None:
        msg = f"not a semantic version: {version[:64]!r}"
        raise ValueError(msg)
    major, minor, patch, pre = match.group(1), match.group(2), match.group(3), match.group(4)
    identifiers = tuple(
        (0, int(part)) if part.isdigit() else (1, part) for part in (pre or "").split(".") if pre
    )
    return int(major), int(minor), int(patch), 0 if pre else 1, identifiers

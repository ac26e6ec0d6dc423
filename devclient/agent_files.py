"""Answering batch-agent runs from real files (docs/protocol.md, "A batch run").

The server's ``agent_run`` names folders and file extensions; the desktop reads
the matching files and streams them back in ``agent_data`` frames, then says
``agent_complete``. A desktop reads only inside the folders its user shared
with batch agents (`SharedFolders`): a path outside them, or a link leading out
of them, is refused and reported, never read.

Rules fixed here, as the desktop app keeps them:

- Folders are searched recursively; hidden files and folders (a leading dot)
  are skipped. Extensions match case-insensitively. Files come in path order.
- Only UTF-8 text is sent; other files are reported in ``errors``.
- Files are packed into ``agent_data`` frames of at most `frame_budget_bytes`
  of JSON (`FRAME_BUDGET_BYTES` by default, half the server's default frame
  limit); a file that would not fit in a frame alone is reported, not sent.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

Frame = dict[str, Any]

FRAME_BUDGET_BYTES: Final = 512 * 1024
"""Half the server's default frame limit: room for JSON escaping to grow a frame."""
MAX_ERRORS: Final = 100
"""Errors one ``agent_complete`` carries at most (the protocol's limit)."""
MAX_ERROR_CHARS: Final = 1000


@dataclass(frozen=True)
class RunFiles:
    """What one ``agent_run`` found: the files read, as the protocol sends them, and errors."""

    files: list[Frame]
    errors: list[str]


class SharedFolders:
    """The folders a desktop lets batch agents read; everything else is off limits."""

    def __init__(
        self,
        folders: Sequence[str | os.PathLike[str]],
        *,
        frame_budget_bytes: int = FRAME_BUDGET_BYTES,
    ) -> None:
        self.roots = [Path(folder).expanduser().resolve() for folder in folders]
        self.frame_budget_bytes = frame_budget_bytes

    def allows(self, path: Path) -> bool:
        """Whether `path` (already resolved, links followed) lies inside a shared folder."""
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def read(self, config: Frame) -> RunFiles:
        """The files an ``agent_run`` config asks for, read from the shared folders."""
        extensions = tuple(str(ext).lower() for ext in config.get("file_extensions") or [])
        files: list[Frame] = []
        errors: list[str] = []
        seen: set[Path] = set()
        for requested in config.get("paths") or []:
            folder = Path(str(requested)).expanduser().resolve()
            if not self.allows(folder):
                errors.append(f"{requested}: not in a folder shared with batch agents")
                continue
            if not folder.is_dir():
                errors.append(f"{requested}: no such folder")
                continue
            for path in self._walk(folder, extensions, errors):
                if path not in seen:
                    seen.add(path)
                    self._read_one(path, files, errors)
        return RunFiles(files=files, errors=errors)

    def _walk(self, folder: Path, extensions: tuple[str, ...], errors: list[str]) -> Iterator[Path]:
        for current, directories, names in os.walk(folder):
            directories[:] = sorted(d for d in directories if not d.startswith("."))
            for name in sorted(names):
                if name.startswith(".") or not name.lower().endswith(extensions):
                    continue
                path = Path(current, name)
                resolved = path.resolve()
                if not self.allows(resolved):
                    errors.append(f"{path}: links outside the shared folders; not read")
                    continue
                yield resolved

    @staticmethod
    def _read_one(path: Path, files: list[Frame], errors: list[str]) -> None:
        try:
            content = path.read_text(encoding="utf-8")
            stat = path.stat()
        except UnicodeDecodeError:
            errors.append(f"{path}: not UTF-8 text; not read")
            return
        except OSError as error:
            errors.append(f"{path}: cannot be read ({error.strerror or error})")
            return
        files.append(
            {
                "path": str(path),
                "name": path.name,
                "content": content,
                "metadata": {"size": stat.st_size, "modified_ms": stat.st_mtime_ns // 1_000_000},
            }
        )


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def run_frames(
    run_id: str, found: RunFiles, *, budget_bytes: int = FRAME_BUDGET_BYTES
) -> list[Frame]:
    """The ``agent_data`` frames carrying `found`, then the ``agent_complete``."""
    frames: list[Frame] = []
    errors = list(found.errors)
    batch: list[Frame] = []
    used = _size({"type": "agent_data", "run_id": run_id, "files": []})
    sent = 0
    for file in found.files:
        size = _size(file) + 1
        if used + size > budget_bytes and batch:
            frames.append({"type": "agent_data", "run_id": run_id, "files": batch})
            batch, used = [], _size({"type": "agent_data", "run_id": run_id, "files": []})
        if used + size > budget_bytes:
            errors.append(f"{file['path']}: too large to send in one frame; not sent")
            continue
        batch.append(file)
        used += size
        sent += 1
    if batch:
        frames.append({"type": "agent_data", "run_id": run_id, "files": batch})
    if len(errors) > MAX_ERRORS:
        errors = [*errors[: MAX_ERRORS - 1], f"… and {len(errors) - MAX_ERRORS + 1} more"]
    frames.append(
        {
            "type": "agent_complete",
            "run_id": run_id,
            "files_read": sent,
            "errors": [error[:MAX_ERROR_CHARS] for error in errors],
        }
    )
    return frames

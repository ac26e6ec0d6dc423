"""The automatic checklist every submission passes before a reviewer sees it.

Pure and synchronous (the router runs it in a worker thread): the manifest text
and the package bytes in, every finding out. A submission is accepted only
when every check passed; otherwise it is refused with 422 and nothing is kept.

- `manifest_json`: a JSON object of at most `MANIFEST_MAX_BYTES`, nested at
  most `MANIFEST_MAX_DEPTH` levels;
- `manifest_schema`: `PluginManifest` (fields, types, semver, category, price);
- `permissions`: only from `ALLOWED_PERMISSIONS`, none twice;
- `manifest_text`: no binary smuggled into the manifest (control characters,
  `data:` URIs, long base64 runs);
- `package_zip`: the package is a zip archive, unencrypted;
- `zip_entries`: every entry stays inside the archive: no absolute path, no
  drive letter, no `..`, no symlink (Unix mode in `external_attr`), no name
  twice, at most `MAX_ENTRIES`; each stored or compressed with deflate, bzip2
  or lzma (what zipfile decompresses);
- `size_limits`: the package within `PACKAGE_MAX_BYTES` (the route stops
  reading past it), and what it unpacks to within `UNPACKED_MAX_BYTES` —
  counted while decompressing, so an entry lying about its size (a zip bomb)
  is caught after at most that many bytes, never unpacked in full; an entry
  that fails to decompress (corrupt data, a zip feature zipfile refuses) fails
  this check too.
"""

from __future__ import annotations

import io
import json
import lzma
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from app.core.json_depth import nests_deeper_than
from app.plugins.schemas import ALLOWED_PERMISSIONS, Finding, PluginManifest

MIB = 1024 * 1024
MANIFEST_MAX_BYTES = 16 * 1024
MANIFEST_MAX_DEPTH = 4
PACKAGE_MAX_BYTES = 10 * MIB
UNPACKED_MAX_BYTES = 50 * MIB
MAX_ENTRIES = 1000
READ_CHUNK_BYTES = 64 * 1024
# A run this long of base64's alphabet is an encoded blob, not prose.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{200,}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")
# The methods zipfile decompresses; for any other (Deflate64, PPMd, …) it raises.
_COMPRESSION_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
# What decompressing a damaged entry raises: a bad CRC or local header (BadZipFile), a
# truncated stream (EOFError), and the codec's own error: zlib.error for deflate, OSError
# for bzip2, LZMAError for lzma.
_CORRUPT_ENTRY = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    ValueError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
)


@dataclass(frozen=True, slots=True)
class ChecklistResult:
    findings: list[Finding]
    manifest: PluginManifest | None

    @property
    def passed(self) -> bool:
        return self.manifest is not None and all(finding.passed for finding in self.findings)

    def failures(self) -> list[str]:
        return [f"{f.check}: {f.detail}" for f in self.findings if not f.passed]


def _finding(check: str, problems: list[str], ok: str) -> Finding:
    return Finding(check=check, passed=not problems, detail="; ".join(problems) or ok)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _parse_manifest(text: str) -> tuple[Finding, dict[str, Any] | None]:
    problems: list[str] = []
    parsed: object = None
    if len(text.encode()) > MANIFEST_MAX_BYTES:
        problems.append(f"the manifest is over {MANIFEST_MAX_BYTES} bytes")
    else:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            problems.append("the manifest is not valid JSON")
    if not problems and nests_deeper_than(parsed, MANIFEST_MAX_DEPTH):
        problems.append(f"the manifest nests deeper than {MANIFEST_MAX_DEPTH} levels")
    elif not problems and not isinstance(parsed, dict):
        problems.append("the manifest is not a JSON object")
    finding = _finding("manifest_json", problems, "a JSON object")
    return finding, parsed if finding.passed and isinstance(parsed, dict) else None


def _schema(raw: dict[str, Any]) -> tuple[Finding, PluginManifest | None]:
    try:
        manifest = PluginManifest.model_validate(raw)
    except ValidationError as exc:
        # Never the rejected input: only where and what.
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: {error['msg']}"
            for error in exc.errors()
        ]
        return _finding("manifest_schema", problems, ""), None
    return _finding("manifest_schema", [], "name, description, version (semver), …"), manifest


def _permissions(raw: dict[str, Any]) -> Finding:
    asked = raw.get("permissions")
    if not isinstance(asked, list):
        return _finding("permissions", ["permissions is not a list"], "")
    names = [str(item) for item in asked]
    problems: list[str] = []
    # Counted, never named: a validation error does not echo what it refused (README, API).
    if unknown := len(set(names) - ALLOWED_PERMISSIONS):
        counted = "1 permission is" if unknown == 1 else f"{unknown} permissions are"
        problems.append(
            f"{counted} not allowed (allowed: {', '.join(sorted(ALLOWED_PERMISSIONS))})"
        )
    if len(set(names)) != len(names):
        problems.append("a permission is listed twice")
    return _finding("permissions", problems, "only allowed permissions")


def _manifest_text(raw: dict[str, Any]) -> Finding:
    problems: set[str] = set()
    for text in _strings(raw):
        if _CONTROL.search(text):
            problems.add("control characters (binary data) in the manifest")
        if "data:" in text.lower():
            problems.add("a data: URI in the manifest")
        if _BASE64_RUN.search(text):
            problems.add("an encoded blob (a long base64 run) in the manifest")
    return _finding("manifest_text", sorted(problems), "text only")


def _entry_problems(info: zipfile.ZipInfo) -> list[str]:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    problems = []
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        problems.append(f"an absolute path: {name[:200]!r}")
    if ".." in parts:
        problems.append(f"a path leaving the archive: {name[:200]!r}")
    if "\x00" in name:
        problems.append("a NUL character in an entry name")
    if stat.S_ISLNK(info.external_attr >> 16):
        problems.append(f"a symbolic link: {name[:200]!r}")
    if info.flag_bits & 0x1:
        problems.append(f"an encrypted entry: {name[:200]!r}")
    if info.compress_type not in _COMPRESSION_METHODS:
        problems.append(f"a compression method other than deflate, bzip2 or lzma: {name[:200]!r}")
    return problems


def _unpacking_problems(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[str]:
    """Why the entries do not unpack within `UNPACKED_MAX_BYTES`, counted while
    decompressing and given up past it, so a size the headers lie about costs no more."""
    too_big = [f"the package unpacks to over {UNPACKED_MAX_BYTES} bytes"]
    if sum(info.file_size for info in infos) > UNPACKED_MAX_BYTES:
        return too_big
    total = 0
    try:
        for info in infos:
            with archive.open(info) as entry:
                while chunk := entry.read(READ_CHUNK_BYTES):
                    total += len(chunk)
                    if total > UNPACKED_MAX_BYTES:
                        return too_big
    except NotImplementedError:
        # zipfile refuses some header flags outright (compressed patched data, strong
        # encryption without the ordinary encryption bit).
        return ["an entry uses a zip feature that is not supported"]
    except _CORRUPT_ENTRY:
        return ["an entry is corrupt"]
    return []


def _package(package: bytes) -> list[Finding]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(package))
    except NotImplementedError:
        # The central directory asks for a zip version newer than zipfile reads.
        return [
            _finding("package_zip", ["the package uses a zip feature that is not supported"], "")
        ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        return [_finding("package_zip", ["the package is not a zip archive"], "")]
    with archive:
        infos = archive.infolist()
        zip_ok = _finding("package_zip", [] if infos else ["the archive is empty"], "a zip")
        problems = [problem for info in infos for problem in _entry_problems(info)]
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            problems.append("an entry name appears twice")
        if len(infos) > MAX_ENTRIES:
            problems.append(f"more than {MAX_ENTRIES} entries")
        entries = _finding("zip_entries", problems, f"{len(infos)} entries inside the archive")
        findings = [zip_ok, entries]
        if not (zip_ok.passed and entries.passed):
            return findings
        if len(package) > PACKAGE_MAX_BYTES:
            sizes = [f"the package is over {PACKAGE_MAX_BYTES} bytes"]
        else:
            sizes = _unpacking_problems(archive, infos)
        detail = f"{len(package)} bytes, unpacking within {UNPACKED_MAX_BYTES}"
        return [*findings, _finding("size_limits", sizes, detail)]


def run_checklist(*, manifest_text: str, package: bytes) -> ChecklistResult:
    """Every check on one submission; `passed` only if all of them passed."""
    parsed_finding, raw = _parse_manifest(manifest_text)
    findings = [parsed_finding]
    manifest = None
    if raw is not None:
        schema_finding, manifest = _schema(raw)
        findings += [schema_finding, _permissions(raw), _manifest_text(raw)]
    findings += _package(package)
    return ChecklistResult(findings=findings, manifest=manifest)

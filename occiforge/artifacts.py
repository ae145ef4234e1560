"""Artifacts on disk: atomic writes, stage folders, manifests.

A stage folder counts as complete only when its `manifest.json` exists, carries the
fingerprint the runner expects, and every artifact it lists still has its size and content
(`files`: size, mtime and sha256 per file, hashed again only when the mtime moved). Everything is first written under a temporary name and then
renamed, so an interrupted run never leaves a file that looks finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

MANIFEST = "manifest.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: os.umask can only be read by setting it
SECTION = "section.html"  # a stage's own part of the run report: an HTML fragment, images inlined


def fingerprint(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (configs, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; artifacts on shared folders must be readable like the rest
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    """JSON as the standard has it: a NaN or infinity is an error here, never an invalid file."""
    try:
        text = json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, allow_nan=False)
    except ValueError as e:
        raise ValueError(f"{path}: refusing to write a non-finite number ({e})") from None
    write_text_atomic(path, text + "\n")


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # unreadable: the folder is simply not finished, and is redone
    files = manifest.get("files", {}) if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, list) and len(v) == 3 for v in files.values()):
        return None  # valid JSON of the wrong shape: the same
    return manifest


def _artifact_files(folder: Path) -> Iterator[Path]:
    """A folder's artifacts: every file but the manifest and hidden work files; a subfolder with a
    manifest of its own (one model, one model's scores) is checked by that manifest instead."""
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name == MANIFEST:
            continue
        if path.is_dir():
            if not (path / MANIFEST).is_file():
                yield from _artifact_files(path)
        elif path.is_file():
            yield path


def file_digest(path: Path) -> str:
    """sha256 of a file, streamed (constant memory whatever its size)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def content_record(folder: Path) -> dict[str, list[Any]]:
    """relative path -> [size, mtime_ns, sha256] for every artifact of `folder`."""
    out: dict[str, list[Any]] = {}
    for path in _artifact_files(folder):
        st = path.stat()
        out[path.relative_to(folder).as_posix()] = [st.st_size, st.st_mtime_ns, file_digest(path)]
    return out


def changed_file(folder: Path, manifest: dict[str, Any]) -> str | None:
    """The first artifact that no longer matches its manifest (missing, resized, other bytes), or None.

    Sizes are always compared; a file is hashed again only when its mtime moved, so an
    untouched run directory costs one stat per file."""
    for rel, (size, mtime, digest) in (manifest.get("files") or {}).items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        st = path.stat()
        if st.st_size != size or (st.st_mtime_ns != mtime and file_digest(path) != digest):
            return f"{path} changed since it was written"
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")) if folder.is_dir() else []:
        if (inner := read_manifest(sub)) is not None and (reason := changed_file(sub, inner)):
            return reason
    return None


class Stale(NamedTuple):
    reason: str
    tampered: bool  # an artifact changed on disk after it was written (worth telling the user)


def staleness(folder: Path, fp: str) -> Stale | None:
    """Why `folder` is not a finished artifact of this configuration, or None when it is."""
    manifest = read_manifest(folder)
    if manifest is None:
        return Stale("not built yet", False)
    if manifest.get("fingerprint") != fp:
        return Stale("its configuration or inputs changed", False)
    changed = changed_file(folder, manifest)
    return Stale(changed, True) if changed else None


def is_complete(folder: Path, fp: str) -> bool:
    return staleness(folder, fp) is None


def write_manifest(folder: Path, fp: str, **fields: Any) -> dict[str, Any]:
    """Written last: the fingerprint, the stage's fields and a content record of every artifact."""
    manifest = {"fingerprint": fp, **fields, "files": content_record(folder)}
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


@contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder next to `final`; on success it replaces `final`.

    On failure or interrupt the temporary folder is removed and `final` is left untouched.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for path in tmp.rglob("*"):  # some writers (safetensors) create 0600 files; make them like the rest
        if path.is_file():
            os.chmod(path, 0o666 & ~_UMASK)
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)

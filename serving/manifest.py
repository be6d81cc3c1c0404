"""On-disk layout of a gallery index directory: the manifest, the data files, verification and the commit.

Directory layout::

    manifest.json               model fingerprint, embedding size, factory, count, file names, sha256s
    index-<gen>-<tag>.faiss     faiss.write_index of the (CPU) index
    items-<gen>-<tag>.jsonl     one JSON line per vector: item_id, path, pid, camera, added

The manifest is the commit point (:func:`commit`): data files get fresh names, then ``manifest.json`` is
atomically replaced, then the files it no longer names are removed. Reading (:func:`read_manifest`,
:func:`verified_files`, :func:`read_items`) checks every file, checksum and count and raises
:class:`GalleryIndexError` naming the problem instead of using a damaged index. Nothing here imports FAISS.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scwm.utils import atomic_path, atomic_write_json, sha256_file

__all__ = ["GalleryIndexError", "MANIFEST", "FORMAT", "FORMAT_VERSION", "DATA_KEYS", "utc_now", "read_manifest",
           "verified_files", "read_items", "commit"]

MANIFEST = "manifest.json"
FORMAT = "scwm-gallery-index"
FORMAT_VERSION = 1
DATA_KEYS = ("index_file", "items_file")  # manifest keys naming the data files (checksums under *_sha256)
_REQUIRED_KEYS = ("format", "format_version", "model_fingerprint", "embedding_size", "factory", "count",
                  "index_file", "index_sha256", "items_file", "items_sha256")


class GalleryIndexError(ValueError):
    """An index directory is missing, damaged, inconsistent, or cannot be built as asked."""


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the manifest's and items' time stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(d: Path) -> dict[str, Any]:
    """The manifest of index directory ``d``, checked for format, version and required keys."""
    if not d.is_dir():
        raise GalleryIndexError(f"index directory not found: {d}")
    path = d / MANIFEST
    if not path.is_file():
        raise GalleryIndexError(f"{d} is not a gallery index: {MANIFEST} is missing")
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalleryIndexError(f"{path} is unreadable or not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise GalleryIndexError(f"{path} is not a {FORMAT} manifest")
    missing = [k for k in _REQUIRED_KEYS if k not in m]
    if missing:
        raise GalleryIndexError(f"{path} lacks key(s) {missing}")
    if m["format_version"] != FORMAT_VERSION:
        raise GalleryIndexError(f"{path} has format version {m['format_version']}, this code reads "
                                f"{FORMAT_VERSION}; rebuild the index")
    return m


def verified_files(d: Path, m: dict[str, Any], verify_checksums: bool = True) -> dict[str, Path]:
    """Paths of the data files manifest ``m`` names in ``d`` (by :data:`DATA_KEYS`), each checked to exist
    and, with ``verify_checksums``, to match its sha256."""
    files = {}
    for key in DATA_KEYS:
        name = m[key]
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise GalleryIndexError(f"{d / MANIFEST}: bad {key} {name!r}")
        path = d / name
        if not path.is_file():
            raise GalleryIndexError(f"index directory {d} is incomplete: {name} (named by {MANIFEST}) "
                                    "is missing")
        if verify_checksums:
            digest = sha256_file(path)
            want = m[key.replace("_file", "_sha256")]
            if digest != want:
                raise GalleryIndexError(f"{path} is corrupt: sha256 {digest[:16]}... does not match the "
                                        f"manifest ({str(want)[:16]}...)")
        files[key] = path
    return files


def read_items(path: Path) -> list[dict[str, Any]]:
    """The item lines of ``path``; item ``i`` must be on line ``i + 1`` and have a path."""
    items = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                it = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GalleryIndexError(f"{path}:{lineno}: invalid item line ({exc})") from None
            if not isinstance(it, dict) or it.get("item_id") != lineno - 1 or "path" not in it:
                raise GalleryIndexError(f"{path}:{lineno}: expected item_id {lineno - 1} with a path")
            items.append(it)
    return items


def commit(directory: str | os.PathLike[str], manifest: dict[str, Any], write_index: Callable[[Path], None],
           items: Sequence[dict[str, Any]], **facts: Any) -> dict[str, Any]:
    """Write a new generation of the index into ``directory`` and return its manifest.

    ``write_index(path)`` writes the FAISS index file; ``facts`` (count, embedding size, index type) are
    recorded in the manifest with the new file names and checksums. The data files get fresh names, then
    ``manifest.json`` is atomically replaced (the commit point; on failure the new files are removed), then
    the files the previous manifest named are removed."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    old = read_manifest(d) if (d / MANIFEST).is_file() else None
    gen = max(int((old or {}).get("generation", 0)), int(manifest.get("generation", 0))) + 1
    tag = uuid.uuid4().hex[:8]
    index_file, items_file = f"index-{gen:06d}-{tag}.faiss", f"items-{gen:06d}-{tag}.jsonl"
    with atomic_path(d / index_file) as tmp:
        write_index(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
    with atomic_path(d / items_file) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for it in items:
                fh.write(json.dumps(it, ensure_ascii=False) + "\n")
        os.chmod(tmp, 0o644)
    m = dict(manifest)
    m.update(format=FORMAT, format_version=FORMAT_VERSION, generation=gen, **facts,
             index_file=index_file, index_sha256=sha256_file(d / index_file),
             items_file=items_file, items_sha256=sha256_file(d / items_file), updated=utc_now())
    m.setdefault("created", m["updated"])
    try:
        atomic_write_json(d / MANIFEST, m)
        os.chmod(d / MANIFEST, 0o644)
    except BaseException:
        (d / index_file).unlink(missing_ok=True)
        (d / items_file).unlink(missing_ok=True)
        raise
    if old:
        for key in DATA_KEYS:
            name = old.get(key)
            if isinstance(name, str) and name not in (index_file, items_file) and "/" not in name:
                (d / name).unlink(missing_ok=True)
    return m

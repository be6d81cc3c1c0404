"""On-disk layout of a gallery index directory: the manifest, the data files, verification and the commit.

Directory layout::

    manifest.json               backend, model fingerprint, embedding size, factory, count, file names, sha256s
    index-<gen>-<tag>.faiss     faiss.write_index of the (CPU) index (FAISS backend only)
    items-<gen>-<tag>.jsonl     one JSON line per vector: item_id, path, pid, camera, added
    milvus.db/                  Milvus Lite data (Milvus backend with the default local URI only)

A Milvus index keeps its vectors in a collection that the manifest names (``uri``, ``collection``; see
:mod:`serving.backends.milvus_backend`) instead of an index file; manifests without ``backend`` are FAISS.
The manifest is the commit point (:func:`commit`): data files get fresh names, then ``manifest.json`` is
atomically replaced (files and directory fsynced). A process killed at any point leaves the old index or the
new one, never a mix (``tests/test_faults.py``, ``docs/bench/faults.md``). Commits into one directory are
serialised by an ``flock`` on the directory; a commit of an index loaded before another commit landed is
refused (:class:`IndexChangedError`) instead of silently dropping the other one's items.

Retention: after a commit the directory holds the new generation's data files and those of the generation
it replaced, so a reader that read the old manifest just before the commit can still load it (the disk
holds two generations, three during a commit). Each commit removes what is older, data files no manifest
names (left by a writer killed before its commit point) and temporary files of dead writers.

Reading (:func:`read_manifest`, :func:`verified_files`, :func:`read_items`) checks every file, checksum and
count and raises :class:`GalleryIndexError` naming the problem instead of using a damaged index. A reader
whose load spans two commits can find a file removed under it: that raises :class:`IndexChangedError`, and
:func:`load_consistent` retries such a load on the new generation. Nothing here imports FAISS.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from scwm.utils import atomic_path, atomic_write_json, fsync_dir, sha256_file

try:
    import fcntl
except ImportError:  # not POSIX: commits are not serialised
    fcntl = None  # type: ignore[assignment]

__all__ = ["GalleryIndexError", "IndexChangedError", "MANIFEST", "FORMAT", "FORMAT_VERSION", "DATA_KEYS",
           "BACKENDS", "utc_now", "backend_of", "data_keys", "read_manifest", "verified_files", "read_items",
           "commit", "load_consistent", "remove_stale_build_dirs", "ModelMismatchError", "index_precision"]
T = TypeVar("T")

MANIFEST = "manifest.json"
FORMAT = "scwm-gallery-index"
FORMAT_VERSION = 1
DATA_KEYS = ("index_file", "items_file")  # manifest keys naming the data files (checksums under *_sha256)
BACKENDS = ("faiss", "milvus")
_REQUIRED_KEYS = ("format", "format_version", "model_fingerprint", "embedding_size", "factory", "count",
                  "items_file", "items_sha256")
_BACKEND_KEYS = {"faiss": ("index_file", "index_sha256"), "milvus": ("uri", "collection")}


class GalleryIndexError(ValueError):
    """An index directory is missing, damaged, inconsistent, or cannot be built as asked."""


class IndexChangedError(GalleryIndexError):
    """The index directory was committed to by another process while this one read it or worked on it.
    For a reader this is a retry (:func:`load_consistent`); for a writer, load the index again and repeat."""


class ModelMismatchError(GalleryIndexError):
    """The model does not match the one that built the index."""


def index_precision(m: dict[str, Any], precision: str | None = None, where: str | os.PathLike[str] = "") -> str:
    """The precision (:mod:`serving.engine`) to serve the model of an index with manifest ``m`` at: the one it was
    built with, from ``model_precision`` (the served file's ``scwm.precision``): ``int8-static`` -> ``int8``,
    anything else -> ``fp32`` (the recorded file as it is). So an index built at fp32 (e.g. on a GPU box) keeps
    serving fp32 on a CPU box where an int8-static sibling exists. ``precision`` (else ``$SCWM_PRECISION``), when
    given, wins: ``auto`` is returned as is (the fingerprint check refuses it if it serves another file), ``fp32`` or
    ``int8`` disagreeing with the index raises :class:`ModelMismatchError` naming the ``--precision`` to pass."""
    from serving.engine import INT8_TAG, PRECISION_ENV, resolve_precision

    recorded = str(m.get("model_precision") or "fp32")
    built = "int8" if recorded == INT8_TAG else "fp32"
    env = os.environ.get(PRECISION_ENV, "").strip()
    if precision is None and not env:
        return built
    given = resolve_precision(precision)
    if given not in ("auto", built):
        source = f"--precision {given}" if precision is not None else f"{PRECISION_ENV}={env}"
        raise ModelMismatchError(
            f"index{f' {where}' if where else ''} was built at {recorded} (--precision {built}) but {source} was "
            "asked for: the embeddings of the two model files are not comparable; pass --precision "
            f"{built} (or neither --precision nor {PRECISION_ENV}: the index's own), or rebuild the index at {given}")
    return given


_DATA_FILE = re.compile(r"^(index-\d{6,}-[0-9a-f]{8}\.faiss|items-\d{6,}-[0-9a-f]{8}\.jsonl)$")
_STALE_BUILD_AGE = 3600.0  # seconds since its last change before a build's temporary directory counts as dead


def _manifest_token(d: Path) -> tuple[int, int, int] | None:
    """Identity of the current ``manifest.json`` (it is replaced, never rewritten in place), None if absent."""
    try:
        st = (d / MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _changed_since(d: Path, m: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest now in ``d`` if it names other data files than ``m`` does, else None."""
    try:
        now = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(now, dict) and any(now.get(k) != m.get(k) for k in DATA_KEYS):
        return now
    return None


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the manifest's and items' time stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def backend_of(m: dict[str, Any]) -> str:
    """The vector backend a manifest names (``faiss`` when it names none: manifests before the Milvus one)."""
    return str(m.get("backend") or "faiss")


def data_keys(m: dict[str, Any]) -> tuple[str, ...]:
    """The manifest keys naming local data files for ``m``'s backend (a Milvus index has no index file)."""
    return DATA_KEYS if backend_of(m) == "faiss" else ("items_file",)


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
    if backend_of(m) not in BACKENDS:
        raise GalleryIndexError(f"{path} names backend {m['backend']!r}; this code knows {list(BACKENDS)}")
    missing = [k for k in _REQUIRED_KEYS + _BACKEND_KEYS[backend_of(m)] if k not in m]
    if missing:
        raise GalleryIndexError(f"{path} lacks key(s) {missing}")
    if m["format_version"] != FORMAT_VERSION:
        raise GalleryIndexError(f"{path} has format version {m['format_version']}, this code reads "
                                f"{FORMAT_VERSION}; rebuild the index")
    return m


def verified_files(d: Path, m: dict[str, Any], verify_checksums: bool = True) -> dict[str, Path]:
    """Paths of the data files manifest ``m`` names in ``d`` (by :func:`data_keys`), each checked to exist
    and, with ``verify_checksums``, to match its sha256."""
    files = {}
    for key in data_keys(m):
        name = m[key]
        if not isinstance(name, str) or "/" in name or name.startswith("."):
            raise GalleryIndexError(f"{d / MANIFEST}: bad {key} {name!r}")
        path = d / name
        if not path.is_file():
            now = _changed_since(d, m)
            if now is not None:
                raise IndexChangedError(f"index directory {d} changed while it was being read (generation "
                                        f"{m.get('generation')} -> {now.get('generation')}): {name} was removed "
                                        "by a later commit; load it again")
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
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise IndexChangedError(f"{path} was removed while the index was being read (a later commit); "
                                "load it again") from None
    except OSError as exc:
        raise GalleryIndexError(f"cannot read {path}: {exc.strerror or exc}") from None
    with fh:
        for lineno, line in enumerate(fh, 1):
            try:
                it = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GalleryIndexError(f"{path}:{lineno}: invalid item line ({exc})") from None
            if not isinstance(it, dict) or it.get("item_id") != lineno - 1 or "path" not in it:
                raise GalleryIndexError(f"{path}:{lineno}: expected item_id {lineno - 1} with a path")
            items.append(it)
    return items


@contextlib.contextmanager
def _locked(d: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on directory ``d`` (released by the kernel if the process dies)."""
    if fcntl is None:
        yield
        return
    fd = os.open(d, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_error(d: Path, exc: BaseException) -> str:
    """What went wrong writing into ``d``, in one line (OSError or a FAISS write error)."""
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return text.rsplit("failed: ", 1)[-1]


def _collect_garbage(d: Path, keep: set[str]) -> None:
    """Remove data files no manifest in ``keep`` names and temporary files (called under the lock, so no
    live writer owns any of them)."""
    for p in d.iterdir():
        if p.name in keep or not p.is_file():
            continue
        if _DATA_FILE.match(p.name) or (p.name.startswith(".") and ".tmp" in p.name):
            p.unlink(missing_ok=True)


def commit(directory: str | os.PathLike[str], manifest: dict[str, Any],
           write_index: Callable[[Path], None] | None, items: Sequence[dict[str, Any]], **facts: Any) -> dict[str, Any]:
    """Write a new generation of the index into ``directory`` and return its manifest.

    ``write_index(path)`` writes the FAISS index file (``None`` for a backend that keeps its vectors elsewhere and
    made them durable before this call: Milvus); ``facts`` (count, embedding size, index type, backend details) are
    recorded in the manifest with the new file names and checksums. Under an exclusive lock on the directory: if
    ``manifest`` was loaded from an index (it names data files) and the directory has been committed to since,
    :class:`IndexChangedError` is raised and nothing is written. Otherwise the data files get fresh names, then
    ``manifest.json`` is atomically replaced (the commit point; on failure the new files are removed and
    :class:`GalleryIndexError` names the directory and the cause, e.g. a full disk), then the files of generations
    before the one replaced, orphans and dead writers' temporary files are removed."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    with _locked(d):
        old = read_manifest(d) if (d / MANIFEST).is_file() else None
        base = manifest.get("items_file")  # every generation (and backend) has its own items file
        if old is not None and base is not None and old.get("items_file") != base:
            raise IndexChangedError(
                f"{d} changed since this index was loaded: it was at generation {manifest.get('generation')} "
                f"({manifest.get('count')} items), another process committed generation {old.get('generation')} "
                f"({old.get('count')} items); nothing was written: load the index again and repeat the change")
        gen = max(int((old or {}).get("generation", 0)), int(manifest.get("generation", 0))) + 1
        tag = uuid.uuid4().hex[:8]
        index_file, items_file = f"index-{gen:06d}-{tag}.faiss", f"items-{gen:06d}-{tag}.jsonl"
        try:
            if write_index is not None:
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
                     items_file=items_file, items_sha256=sha256_file(d / items_file), updated=utc_now())
            if write_index is not None:
                m.update(index_file=index_file, index_sha256=sha256_file(d / index_file))
            else:  # the vectors live in the backend (e.g. a Milvus collection named in facts)
                m.pop("index_file", None)
                m.pop("index_sha256", None)
            m.setdefault("created", m["updated"])
            atomic_write_json(d / MANIFEST, m)
            os.chmod(d / MANIFEST, 0o644)
        except BaseException as exc:
            (d / index_file).unlink(missing_ok=True)
            (d / items_file).unlink(missing_ok=True)
            if isinstance(exc, (OSError, RuntimeError)):
                state = (f"the index there is unchanged (generation {old.get('generation')})" if old
                         else "nothing was committed")
                raise GalleryIndexError(f"cannot write the index into {d}: {_write_error(d, exc)}; "
                                        f"{state}") from exc
            raise
        keep = {MANIFEST, index_file, items_file}
        keep.update(str(old[k]) for k in DATA_KEYS if old and isinstance(old.get(k), str))
        _collect_garbage(d, keep)
        fsync_dir(d)
    return m


def load_consistent(directory: str | os.PathLike[str], load: Callable[[], T], attempts: int = 5) -> T:
    """``load()`` (which reads index directory ``directory``), again if it failed because a commit landed
    while it ran (:class:`IndexChangedError`, or any :class:`GalleryIndexError` while ``manifest.json`` was
    replaced), up to ``attempts`` times. Readers racing one commit never need this (the previous generation
    is kept); a load that spans two commits does."""
    d = Path(directory)
    for attempt in range(1, attempts + 1):
        before = _manifest_token(d)
        try:
            return load()
        except GalleryIndexError as exc:
            changed = isinstance(exc, IndexChangedError) or _manifest_token(d) != before
            if not changed or attempt == attempts:
                raise
    raise AssertionError("unreachable")


def remove_stale_build_dirs(out: str | os.PathLike[str], min_age: float = _STALE_BUILD_AGE) -> list[Path]:
    """Remove the temporary directories (``.<name>.*.tmp`` next to ``out``) that builds of ``out`` killed
    before their rename left behind, if unchanged for ``min_age`` seconds and not locked by a commit."""
    out = Path(out)
    removed: list[Path] = []
    if not out.parent.is_dir():
        return removed
    for cand in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        try:
            if not cand.is_dir() or cand.is_symlink() or time.time() - cand.stat().st_mtime < min_age:
                continue
            fd = os.open(cand, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            continue
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue
        finally:
            os.close(fd)
        shutil.rmtree(cand, ignore_errors=True)
        removed.append(cand)
    return removed

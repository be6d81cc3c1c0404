"""Small shared helpers: device selection, seeding and atomic file writes."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import json
import os
import pickle
import random
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # not POSIX: no locking, stale temporary files are never removed
    fcntl = None  # type: ignore[assignment]


def pick_device(requested: str | None = None) -> torch.device:
    """Return ``requested`` (e.g. ``"cpu"``, ``"cuda:1"``) if given, else CUDA when present, else CPU."""
    if requested not in (None, "", "auto"):
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
        return dev
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


STALE_TEMP_AGE = 2.0  # seconds: a temporary file younger than this is never treated as stale


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """``fsync`` a directory, so that a rename or unlink in it survives a power loss (not needed against a
    killed process: the page cache outlives it). Filesystems that cannot sync a directory are ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    """Take an exclusive ``flock`` on ``fd`` without waiting; False if another process holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the lock file ``path`` (created if missing) for the ``with`` body,
    waiting for any other holder: concurrent processes (DDP ranks, parallel experiments) that would build
    the same file or folder run one after the other. Without ``flock`` (not POSIX) nothing is locked."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)


def _is_stale_temp(path: Path) -> bool:
    """A temporary file of :func:`atomic_path` whose writer is gone: no process holds its lock and it is
    older than :data:`STALE_TEMP_AGE` (the age covers the instant between its creation and its locking).
    Without ``flock`` (not POSIX) no file is ever taken for stale."""
    if fcntl is None:
        return False
    try:
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < STALE_TEMP_AGE:
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        return _try_lock(fd)
    finally:
        os.close(fd)  # releases the lock just taken


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left next to ``path`` when its writer was killed
    (``.<name>.<random>.tmp`` and files derived from it, ``.<name>.<random>.tmp.*``). A temporary file
    that a live writer holds is kept. Returns the removed paths."""
    target = Path(path)
    removed: list[Path] = []
    if not target.parent.is_dir():
        return removed
    for cand in sorted(target.parent.glob(f".{glob.escape(target.name)}.*.tmp")):
        if not _is_stale_temp(cand):
            continue
        for extra in [cand, *cand.parent.glob(f"{glob.escape(cand.name)}.*")]:
            with contextlib.suppress(OSError):
                extra.unlink()
                removed.append(extra)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed over ``path`` atomically.

    The temporary file is ``fsync``ed before the rename and the directory after it. On an exception the
    temporary file is removed and ``path`` is left untouched, so a reader never sees a half-written file;
    an ``OSError`` that names no file (a full disk: ``ENOSPC``, ``EFBIG``) is raised again naming ``path``.
    The temporary file is locked (``flock``) while it is written: one that a killed writer left behind
    is removed by the next write to the same ``path`` (:func:`remove_stale_temps`).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp_path = Path(tmp)
    try:
        _try_lock(fd)  # a fresh file: nobody else can hold it
        yield tmp_path
        sync_fd = os.open(tmp_path, os.O_RDONLY)  # the caller may have written through another descriptor
        try:
            os.fsync(sync_fd)
        finally:
            os.close(sync_fd)
        os.replace(tmp_path, target)
        fsync_dir(target.parent)
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:  # e.g. ENOSPC from a write(): name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc
        raise
    finally:
        os.close(fd)
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=indent, sort_keys=False) + "\n").encode())


def atomic_torch_save(path: str | os.PathLike[str], obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (checkpoint files are never half written)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_torch_file(path: str | os.PathLike[str], error: type[Exception], what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; any read failure becomes ``error`` naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise error(f"could not read {what} {path}: {reason}") from exc


def sha256_file(path: str | os.PathLike[str], block_size: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in blocks (checkpoint sources, index checksums)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            h.update(block)
    return h.hexdigest()

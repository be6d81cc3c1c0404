"""The app process's native memory under load: cap glibc's malloc arenas.

glibc gives each thread that meets lock contention its own malloc arena (up to 8 per core). Gradio runs every
search in a worker thread, and each search decodes an upload, runs ONNX Runtime and encodes 11 PNG tiles, so
freed blocks scatter over many arenas that are rarely returned whole to the system: the 10-minute soak of
``docs/bench/load.md`` saw the app's RSS grow by about 60 MB per 1000 searches, while the memory Python traced
grew by 3 MB. Most of it was free memory that glibc kept: capped at two arenas (:func:`limit_malloc_arenas`,
``mallopt(M_ARENA_MAX)``, which only affects arenas made afterwards, so call it before the server starts), the
RSS still grew by about 10 MB per 1000 searches, but ``malloc_trim(0)`` after each round of 160 searches brought it
back to the same 1,023 MB every time (after a ``gc.collect()``: objects in reference cycles wait for CPython's
rare full collections, which cost about a second over the app's 480k objects at start, so
:func:`freeze_startup_objects` moves those out of the collector's way). :class:`MallocTrimmer` collects and returns
that memory at most every few seconds. Without glibc only the collection runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = ["ARENA_ENV", "DEFAULT_ARENAS", "DEFAULT_TRIM_SECONDS", "MallocTrimmer", "freeze_startup_objects",
           "limit_malloc_arenas", "malloc_arena_count"]

ARENA_ENV = "MALLOC_ARENA_MAX"
"""glibc's own environment variable; when it is set, it wins (it is read at process start)."""
DEFAULT_ARENAS = 2
DEFAULT_TRIM_SECONDS = 5.0
_M_ARENA_MAX = -8  # <malloc.h>


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_info") else None


def limit_malloc_arenas(n: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas of this process at ``n`` (>= 1). Returns whether the cap was set: ``False``
    without glibc, or when ``$MALLOC_ARENA_MAX`` already decides it. ``n = 0`` leaves glibc's default."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"malloc arenas must be a non-negative integer (0 = glibc's default), got {n!r}")
    libc = _glibc()
    if n == 0 or libc is None or os.environ.get(ARENA_ENV):
        return False
    return bool(libc.mallopt(_M_ARENA_MAX, n))


def malloc_arena_count() -> int | None:
    """How many malloc arenas (heaps) this process has now, from glibc's ``malloc_info``; None without glibc."""
    libc = _glibc()
    if libc is None:
        return None
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.TemporaryDirectory(prefix="scwm-malloc-") as tmp:
        path = Path(tmp) / "malloc_info.xml"
        fp = libc.fopen(str(path).encode(), b"w")
        if not fp:
            return None
        try:
            libc.malloc_info(0, fp)
        finally:
            libc.fclose(fp)
        return len(re.findall(r'<heap nr="\d+">', path.read_text()))


def freeze_startup_objects() -> int:
    """Collect, then move every object alive now (modules, the model, the index) to CPython's permanent
    generation (``gc.freeze``), so later collections only walk what requests create. Returns how many were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class MallocTrimmer:
    """At most once per ``interval_s`` seconds, collect garbage (``gc.collect``) and give free heap memory back to
    the system (glibc ``malloc_trim(0)``): call :meth:`maybe_trim` after each request, from any thread.
    ``interval_s = 0``: never; no glibc: only the collection."""

    def __init__(self, interval_s: float = DEFAULT_TRIM_SECONDS) -> None:
        if not interval_s >= 0:
            raise ValueError(f"malloc trim interval must be >= 0 seconds (0 = off), got {interval_s!r}")
        self.interval_s = float(interval_s)
        self._libc = _glibc() if interval_s > 0 else None
        self._lock = threading.Lock()
        self._last = -float("inf")
        self.trims = 0

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def maybe_trim(self) -> bool:
        """Collect and trim when the last turn is ``interval_s`` old; returns whether this call did."""
        if not self.enabled:
            return False
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.interval_s:
                return False
            self._last = now
            self.trims += 1
        gc.collect()
        if self._libc is not None:
            self._libc.malloc_trim(0)
        return True

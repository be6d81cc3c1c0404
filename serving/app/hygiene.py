"""What Gradio keeps of every request in a long-lived app, and its removal (issue 21, ``docs/bench/load.md``).

An API client opens a session per call, and Gradio (6.31) keeps per call, beyond the session values that
``--max-sessions`` bounds:

- every file it writes or receives: the uploaded query and the 11 PNG tiles of a search, named by content, in its
  cache folder, their paths in ``Blocks.temp_file_sets``. Nothing removes them unless ``gr.Blocks(delete_cache=...)``
  is set, and Gradio's own sweeper walks those sets in a worker thread while searches add to them, so the first
  ``RuntimeError: Set changed size during iteration`` ends it for the life of the process, silently.
  :func:`sweep_cache` walks snapshots instead, and also removes the folder each file was written in;
- an empty set per session in ``Queue.pending_event_ids_session`` (the result stream removes the delivered event id,
  never the set), which the result route of ``/call`` then scans on every request; and the session's message queue
  in ``pending_messages_per_session`` (2,000 kept); :func:`prune_queue` drops both once nothing of the session is
  pending;
- an entry per event in ``Queue.event_analytics`` (10,000 kept) for the monitoring page; :func:`prune_queue` keeps the
  latest ``MAX_ANALYTICS_EVENTS``.

:class:`GradioHygiene` does both on a timer inside the server's event loop (a FastAPI lifespan passed to
``Blocks.launch``, so no Gradio code is patched and it runs whether or not a search ever does) and, at a clean
shutdown (``demo.close()``, Ctrl-C; not SIGTERM), removes the files the app wrote, as ``delete_cache`` would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from gradio.utils import get_upload_folder

__all__ = ["DEFAULT_CACHE_MINUTES", "MAX_ANALYTICS_EVENTS", "GradioHygiene", "prune_queue", "sweep_cache"]

log = logging.getLogger("scwm.app")

DEFAULT_CACHE_MINUTES = 60.0
"""How long a file Gradio wrote (a rendered tile, an uploaded query) stays in its cache after it was last written:
long enough for any client to fetch the files of its answer (a page left open longer loses its images)."""
MAX_ANALYTICS_EVENTS = 1000
"""Events whose timings Gradio's monitoring page keeps (its own bound is 10,000: about 4 MB here)."""


def sweep_cache(blocks: Any, age_s: float | None, now: float | None = None) -> tuple[int, int]:
    """Remove the files of ``blocks.temp_file_sets`` (everything Gradio cached for this app: uploads, outputs)
    changed more than ``age_s`` seconds before ``now`` (``None``: all of them; Gradio's rule: the file's ctime,
    which a rewrite of the same content renews), except those a component keeps (``keep_in_cache``), from disk and
    from the sets, and their folder when it is left empty. Safe while other threads add files: it walks copies.
    Returns (files, bytes) removed."""
    now = time.time() if now is None else now
    keep: set[str] = set()
    for block in list(blocks.blocks.values()):
        keep.update(getattr(block, "keep_in_cache", ()))
    roots = {os.path.realpath(get_upload_folder())}
    roots.update(os.path.realpath(b.GRADIO_CACHE) for b in list(blocks.blocks.values()) if hasattr(b, "GRADIO_CACHE"))
    files = size = 0
    for temp_set in list(blocks.temp_file_sets):
        gone = set()
        for name in temp_set.copy():  # a snapshot: Gradio's worker threads add to the set meanwhile
            if name in keep:
                continue
            try:
                st = os.lstat(name)
                if age_s is not None and now - st.st_ctime <= age_s:
                    continue
                os.remove(name)
                files, size = files + 1, size + st.st_size
            except FileNotFoundError:
                pass  # removed by someone else: forget it too
            gone.add(name)
            parent = os.path.realpath(os.path.dirname(name))
            if os.path.dirname(parent) in roots:  # a folder of the cache, never the cache itself
                try:
                    os.rmdir(parent)  # Gradio writes each file in a folder named by its content hash
                except OSError:
                    pass  # not empty (another file of the same hash), or gone
        temp_set.difference_update(gone)
    return files, size


def prune_queue(queue: Any, max_analytics: int = MAX_ANALYTICS_EVENTS) -> int:
    """Drop what Gradio's queue keeps of sessions that have nothing pending: the empty set of event ids in
    ``pending_event_ids_session`` and, when it holds no message, the session's message queue; and all but the latest
    ``max_analytics`` entries of ``event_analytics``. Must run in the server's event loop (where Gradio changes
    these); sessions with an event still queued, running or not yet delivered are left alone. Returns how many
    sessions were dropped."""
    live = {event.session_hash for event in list(queue.event_ids_to_events.values())}
    done = [s for s, ids in list(queue.pending_event_ids_session.items()) if not ids and s not in live]
    for s in done:
        del queue.pending_event_ids_session[s]
        messages = queue.pending_messages_per_session.get(s)
        if messages is not None and messages.empty():
            del queue.pending_messages_per_session[s]
    analytics = queue.event_analytics
    for key in list(analytics)[:max(0, len(analytics) - max_analytics)]:
        analytics.pop(key, None)
    return len(done)


class GradioHygiene:
    """Every ``interval_s`` seconds while the server runs: :func:`prune_queue`, and :func:`sweep_cache` of the files
    older than ``cache_minutes`` (0 = never); at a clean shutdown the app's files are removed
    (unless ``cache_minutes`` is 0). Pass :meth:`lifespan` as ``app_kwargs={"lifespan": ...}`` to
    ``Blocks.launch``. Default interval: a tenth of the age, between 1 and 60 s."""

    def __init__(self, cache_minutes: float = DEFAULT_CACHE_MINUTES, interval_s: float | None = None,
                 max_analytics: int = MAX_ANALYTICS_EVENTS) -> None:
        if not cache_minutes >= 0:
            raise ValueError(f"cache minutes must be >= 0 (0 = never remove the files), got {cache_minutes!r}")
        self.age_s = 60.0 * float(cache_minutes) if cache_minutes > 0 else None
        default = min(60.0, max(1.0, self.age_s / 10)) if self.age_s else 60.0
        self.interval_s = default if interval_s is None else float(interval_s)
        if not self.interval_s > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval_s!r}")
        self.max_analytics = max_analytics
        self.rounds = self.sessions_dropped = self.files_removed = self.bytes_removed = 0

    async def tick(self, blocks: Any) -> None:
        """One round: prune the queue here (in the event loop), sweep the cache in a worker thread."""
        queue = getattr(blocks, "_queue", None)
        if queue is not None:
            self.sessions_dropped += prune_queue(queue, self.max_analytics)
        if self.age_s is not None:
            files, size = await anyio.to_thread.run_sync(sweep_cache, blocks, self.age_s)
            self.files_removed, self.bytes_removed = self.files_removed + files, self.bytes_removed + size
        self.rounds += 1

    async def _run(self, app: Any) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick(app.get_blocks())
            except Exception:  # noqa: BLE001 - one failed round must not end the ones after it
                log.exception("cleaning Gradio's leftovers failed")

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """FastAPI lifespan: the timer while the server runs, the app's files removed when it stops."""
        task = asyncio.create_task(self._run(app))
        try:
            yield
        finally:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            if self.age_s is not None:
                sweep_cache(app.get_blocks(), None)

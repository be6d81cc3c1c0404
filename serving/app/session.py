"""What the app holds and does, without Gradio: the loaded retriever (:class:`AppState`), the files the web
server may serve, the Market protocol, example queries, the gallery parse cache, and one search turned into views
and a status line. Uploads are checked by :func:`serving.app.uploads.check_image`."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from serving.app.demo import DemoPlan, is_untrained_demo, missing_artifacts_markdown, plan_demo
from serving.app.uploads import MAX_PIXELS, check_image
from serving.app.views import (
    MATCH_RGB,
    MISMATCH_RGB,
    VIEW_MODES,
    caption,
    hits_json,
    is_match,
    legend_html,
    model_info_markdown,
    public_name,
    redact_paths,
    render_view,
)
from serving.index import DEFAULT_INDEX_DIR, MANIFEST, parse_market_name
from serving.retriever import Hit, Retriever

__all__ = ["MAX_PIXELS", "DEMO_INDEX_DIR", "TILE_HEIGHT", "QUERY_HEIGHT", "AppState", "SearchResult", "run_search",
           "header", "panels", "check_image", "exclude_junk", "dataset_roots", "example_queries", "ParseCache",
           "compact_labels", "served_paths"]

log = logging.getLogger("scwm.app")
DEMO_INDEX_DIR = Path("exports/demo/index")
TILE_HEIGHT = 256
QUERY_HEIGHT = 320

TITLE = "# SCWM · person re-identification without identity labels"
INTRO = ("Upload a photo of a person or pick an example: the model finds the same person in the gallery and shows "
         "the body parts it learned to segment **without any identity or part labels**.")
DEMO_BANNER = ("\n\n> ⚠️ **Untrained demo model** (random weights) on the tiny synthetic world: it shows how the app "
               "works, not what SCWM learns. Train with `python -m training.run` for real results.")


def exclude_junk(hits: Sequence[Hit], q_pid: int | None, q_cam: int | None, k: int) -> list[Hit]:
    """Market protocol: drop gallery images of the query's identity from the query's camera (and pid -1
    junk), then keep ``k`` and renumber the ranks."""
    if q_pid is None or q_pid < 0:
        return list(hits[:k])
    keep = [h for h in hits if not (h.pid is not None and (h.pid < 0 or (h.pid == q_pid and h.camera == q_cam)))]
    return [replace(h, rank=i + 1) for i, h in enumerate(keep[:k])]


def dataset_roots(items: Sequence[dict[str, Any]]) -> list[Path]:
    """Folders the gallery images live in (their Market root when they sit in ``bounding_box_test``)."""
    roots: dict[Path, None] = {}
    for it in items:
        parent = Path(it["path"]).parent
        roots[parent.parent if parent.name == "bounding_box_test" else parent] = None
    return list(roots)


def example_queries(items: Sequence[dict[str, Any]], n: int = 8) -> list[Path]:
    """Up to ``n`` example queries: images of distinct gallery identities from a sibling ``query/`` folder
    (Market layout), else gallery images of distinct identities."""
    gallery_pids = {it.get("pid") for it in items if it.get("pid") is not None and it.get("pid") > 0}
    candidates: list[Path] = []
    for root in dataset_roots(items)[:4]:
        qdir = root / "query"
        if qdir.is_dir():
            candidates.extend(sorted(p for p in qdir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")))
    if not candidates:
        candidates = [Path(it["path"]) for it in items]
    distinct: list[Path] = []
    seen: set[int | None] = set()
    for p in candidates:
        pid, _ = parse_market_name(p)
        if pid is not None and (pid in seen or (gallery_pids and pid not in gallery_pids)):
            continue
        seen.add(pid)
        distinct.append(p)
    if not distinct:
        return []
    # spread over the whole set rather than the first few identities
    idx = np.unique(np.linspace(0, len(distinct) - 1, num=min(n, len(distinct))).round().astype(int))
    return [distinct[i] for i in idx if distinct[i].is_file()]


def compact_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as uint8 when every value fits: the model's argmax gives int64, 8 bytes a pixel, and the
    :class:`ParseCache` of a long-lived app holds thousands of maps (4,096 x 33 KB = 134 MB, issue 21)."""
    if labels.dtype != np.uint8 and labels.size and 0 <= labels.min() and labels.max() <= 255:
        return labels.astype(np.uint8)
    return labels


class ParseCache:
    """Bounded cache of gallery part label maps (by item id, stored as :func:`compact_labels`), parsed in batches."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._data: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, retriever: Retriever, hits: Sequence[Hit]) -> list[tuple[Image.Image, np.ndarray]]:
        """(image, label map at the image's size) for each hit."""
        images = [Image.open(h.path).convert("RGB") for h in hits]
        with self._lock:
            cached = {h.item_id: self._data[h.item_id] for h in hits if h.item_id in self._data}
        todo = [i for i, h in enumerate(hits) if h.item_id not in cached]
        if todo:
            for i, labels in zip(todo, retriever.parse_batch([images[i] for i in todo]), strict=True):
                cached[hits[i].item_id] = compact_labels(labels)
            with self._lock:
                for i in todo:
                    self._data[hits[i].item_id] = cached[hits[i].item_id]
                while len(self._data) > self.capacity:
                    self._data.popitem(last=False)
        return [(images[i], cached[h.item_id]) for i, h in enumerate(hits)]


class AppState:
    """The loaded retriever (or why there is none), shared by all sessions."""

    def __init__(self, root: Path, index: str | os.PathLike[str] | None, model: str | os.PathLike[str] | None,
                 providers: Sequence[str] | None, threads: int | None, precision: str | None = None) -> None:
        self.root = root
        self.model = Path(model) if model else None
        self.providers = list(providers) if providers else None
        self.threads = threads
        self.precision = precision  # auto|fp32|int8; None: $SCWM_PRECISION, else the index's (serving.engine)
        self.cache = ParseCache()
        self.build_lock = threading.Lock()
        self.retriever: Retriever | None = None
        self.error: str | None = None
        self.examples: list[Path] = []
        self._pairs: Counter[tuple[int | None, int | None]] = Counter()
        self._junk = 0
        if index is not None:
            self.index_dir = Path(index)
            self.open(self.index_dir)
        else:
            self.index_dir = root / DEFAULT_INDEX_DIR
            demo_dir = root / DEMO_INDEX_DIR
            if not (self.index_dir / MANIFEST).is_file() and (demo_dir / MANIFEST).is_file():
                self.index_dir = demo_dir
            if (self.index_dir / MANIFEST).is_file():
                self.open(self.index_dir)

    def open(self, index_dir: Path) -> bool:
        """Load ``index_dir``; on failure keep the reason in :attr:`error`."""
        try:
            r = Retriever.load(index_dir, self.model, providers=self.providers, intra_op_threads=self.threads,
                               precision=self.precision)
        except (ValueError, OSError, RuntimeError) as exc:  # index/model errors are ValueErrors naming the cause
            self.retriever, self.error = None, str(exc)
            log.warning("cannot open %s: %s", index_dir, exc)
            return False
        self.retriever, self.error, self.index_dir = r, None, Path(index_dir)
        self.cache = ParseCache()
        self.examples = example_queries(r.gallery_items, n=8)
        self._pairs = Counter((it.get("pid"), it.get("camera")) for it in r.gallery_items)
        self._junk = sum(n for (pid, _), n in self._pairs.items() if pid is not None and pid < 0)
        return True

    def display(self, path: str | os.PathLike[str]) -> str:
        """``path`` as the page may show it: relative to the project root, else its name."""
        return public_name(path, self.root)

    def redact(self, text: str) -> str:
        """``text`` (an error message) without absolute server paths."""
        return redact_paths(text, self.root)

    def plan(self) -> DemoPlan:
        """What the one-click build would do now."""
        return plan_demo(self.root)

    def extra_for(self, pid: int | None, cam: int | None) -> int:
        """How many gallery images the Market protocol may drop for this query."""
        if pid is None or pid < 0:
            return 0
        return self._pairs.get((pid, cam), 0) + self._junk


def served_paths(state: AppState, keep: Sequence[str | os.PathLike[str]] = ()) -> tuple[list[str], list[str]]:
    """``(allowed, blocked)`` absolute paths for Gradio's file route.

    Allowed are only the example query files the page shows (exact files, no folders); everything else the
    browser fetches (result tiles, query views, example thumbnails, uploads) is written by Gradio to its own
    cache. Gallery originals are never sent un-rendered, so they are not served. Blocked (defence in depth) are
    the index directory, the model file and the project's ``runs/``, ``exports/``, ``.venv/`` and ``.git/``,
    except a blocked folder that holds an allowed file or a ``keep`` folder (Gradio's cache)."""
    allowed = sorted({str(p.resolve()) for p in state.examples if p.is_file()})
    root = state.root.resolve()
    candidates = [state.index_dir, root / "runs", root / "exports", root / ".venv", root / ".git"]
    candidates += [p for p in (state.model, state.retriever and state.retriever.engine.model_path) if p]
    protect = [Path(a) for a in allowed] + [Path(k).resolve() for k in keep]
    blocked = set()
    for c in candidates:
        c = Path(c).resolve()
        if not any(x == c or x.is_relative_to(c) for x in protect):
            blocked.add(str(c))
    return allowed, sorted(blocked)


def header(state: AppState) -> str:
    """Title, introduction and, for the untrained demo model, a warning banner."""
    r = state.retriever
    return TITLE + "\n\n" + INTRO + (DEMO_BANNER if r is not None and is_untrained_demo(r) else "")


@dataclass(frozen=True)
class SearchResult:
    """One search as the page shows it; ``warning`` (if any) is also raised as a toast by the UI."""

    query_view: Image.Image | None
    tiles: list[tuple[Image.Image, str]]
    status: str
    hits: list[dict[str, Any]]
    warning: str | None = None

    @property
    def outputs(self) -> tuple[Image.Image | None, list[tuple[Image.Image, str]], str, list[dict[str, Any]]]:
        """(query view, [(result tile, caption)], status Markdown, hits as dicts), the UI's outputs."""
        return self.query_view, self.tiles, self.status, self.hits


def run_search(state: AppState, query: str | None, k: float, mode: str, alpha: float, protocol: bool,
               ) -> SearchResult:
    """Search the gallery with the query file and render the views; problems become a status (and a warning)."""
    r = state.retriever
    if r is None:
        return SearchResult(None, [], "No gallery is loaded: see the instructions above.", [])
    if query is None:
        return SearchResult(None, [], "Upload a query image or pick one of the examples.", [])
    img, err, notes = check_image(query)
    if img is None:
        return SearchResult(None, [], f"⚠️ {err}", [], err or "invalid image")
    if len(r) == 0:
        where = state.display(state.index_dir)
        msg = (f"The gallery `{where}` is empty: add images with "
               f"`python -m serving.index add --index {where} --images DIR`.")
        return SearchResult(None, [], f"⚠️ {msg}", [], "The gallery is empty.")
    mode = mode if mode in VIEW_MODES else "Overlay"
    k = max(1, int(k))
    t0 = time.perf_counter()
    q_pid, q_cam = parse_market_name(query)
    extra = state.extra_for(q_pid, q_cam) if protocol else 0
    hits, q_labels = r.query(img, k + extra)
    hits = exclude_junk(hits, q_pid, q_cam, k) if protocol else hits[:k]
    parsed = state.cache.get_many(r, hits)
    elapsed = (time.perf_counter() - t0) * 1000
    n_labels = len(r.part_names)
    q_view = render_view(img, q_labels, n_labels, mode, alpha, height=QUERY_HEIGHT)
    tiles = []
    for hit, (gimg, labels) in zip(hits, parsed, strict=True):
        match = is_match(hit, q_pid)
        border = None if match is None else (MATCH_RGB if match else MISMATCH_RGB)
        tiles.append((render_view(gimg, labels, n_labels, mode, alpha, height=TILE_HEIGHT, border=border),
                      caption(hit, q_pid, q_cam)))
    status = [f"**Top-{len(hits)}** of {len(r):,} gallery images"]
    if q_pid is not None:
        status.append(f"query: pid {q_pid} · cam {q_cam}")
        matches = [h.rank for h in hits if is_match(h, q_pid)]
        status.append(f"**{len(matches)}** true match{'es' if len(matches) != 1 else ''} shown"
                      + (f" (first at rank {matches[0]})" if matches else ""))
        if protocol:
            status.append("same-camera images of this identity hidden")
    status.append(f"{elapsed:.0f} ms")
    status.extend(f"_{n}_" for n in notes)
    return SearchResult(q_view, tiles, " · ".join(status), hits_json(hits, q_pid))


def panels(state: AppState) -> dict[str, Any]:
    """Current values of the panels that depend on what is loaded."""
    r = state.retriever
    plan = state.plan()
    return {
        "header": header(state),
        "setup": missing_artifacts_markdown(state.display(state.index_dir),
                                            state.redact(state.error) if state.error else None, plan)
        if r is None else "",
        "build_label": "Build demo gallery" if plan.checkpoint is None else f"Export {plan.checkpoint.parent.name} "
                                                                         "model and build gallery",
        "info": model_info_markdown(r, state.root) if r is not None else "",
        "legend": legend_html(r.part_names, any(it.get("pid") is not None for it in r.gallery_items))
        if r is not None else "",
        "examples": [[str(p)] for p in state.examples],
    }

"""FAISS backend: an inner-product index in this process, persisted as ``index-<gen>-<tag>.faiss``.

Exact search (``IndexFlatIP`` on L2-normalized embeddings = cosine) by default; IVF / HNSW / PQ from a FAISS
factory string. The file is written by :func:`serving.manifest.commit` (fresh name, then the manifest swap).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from serving.manifest import GalleryIndexError

__all__ = ["FaissStore", "check_factory", "make_faiss_index", "faiss_msg"]

log = logging.getLogger(__name__)


def faiss_msg(exc: BaseException) -> str:
    """The useful last part of a FAISS C++ exception message."""
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    for marker in ("failed: ", "Error: "):
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text


def _is_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
        return True
    except (RuntimeError, AttributeError):
        return False


def _is_hnsw(index: faiss.Index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexHNSW)


def apply_search_params(index: faiss.Index, params: dict[str, int | None]) -> None:
    ps = faiss.ParameterSpace()
    for name, value in params.items():
        if value is None:
            continue
        if name == "nprobe" and not _is_ivf(index):
            raise GalleryIndexError(f"nprobe={value} applies to IVF indexes only (this index is "
                                    f"{type(faiss.downcast_index(index)).__name__})")
        if name == "efSearch" and not _is_hnsw(index):
            raise GalleryIndexError(f"efSearch={value} applies to HNSW indexes only (this index is "
                                    f"{type(faiss.downcast_index(index)).__name__})")
        if int(value) < 1:
            raise GalleryIndexError(f"{name} must be >= 1, got {value}")
        ps.set_index_parameter(index, name, int(value))


def check_factory(dim: int, factory: str, nprobe: int | None = None, ef_search: int | None = None) -> None:
    """Fail early (before embedding a gallery) on a bad factory string or search parameter."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryIndexError(f"invalid FAISS factory string {factory!r} for dimension {dim}: "
                                f"{faiss_msg(exc)}") from None
    apply_search_params(index, {"nprobe": nprobe, "efSearch": ef_search})


def make_faiss_index(embeddings: np.ndarray, factory: str = "Flat", nprobe: int | None = None,
                     ef_search: int | None = None) -> faiss.Index:
    """A CPU inner-product index from a FAISS factory string, trained (if needed) on and filled with
    ``embeddings`` (N, D), which are L2-normalized first."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise GalleryIndexError(f"embeddings must be (N, D), got shape {x.shape}")
    x = x.copy()
    faiss.normalize_L2(x)
    try:
        index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryIndexError(f"invalid FAISS factory string {factory!r} for dimension {x.shape[1]}: "
                                f"{faiss_msg(exc)}") from None
    if not index.is_trained:
        try:
            index.train(x)
        except RuntimeError as exc:
            raise GalleryIndexError(f"cannot train {factory!r} on {len(x)} embeddings (IVF needs at least "
                                    f"as many as its lists, PQ at least 256; use 'Flat' for small galleries): "
                                    f"{faiss_msg(exc)}") from None
    index.add(x)
    apply_search_params(index, {"nprobe": nprobe, "efSearch": ef_search})
    return index


def _to_gpu(index: faiss.Index) -> tuple[faiss.Index, bool]:
    """Move ``index`` to GPU 0 when FAISS sees a GPU and supports the index type; else keep it."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() < 1:
        return index, False
    try:
        res = faiss.StandardGpuResources()
        gpu = faiss.index_cpu_to_gpu(res, 0, index)
        gpu.scwm_gpu_resources = res  # keep the resources alive as long as the index
        return gpu, True
    except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU implementation
        log.info("keeping the index on the CPU (%s)", exc)
        return index, False


class FaissStore:
    """A FAISS index in memory (on GPU 0 if asked and possible). CPU searches are thread-safe; GPU searches
    are serialised by a lock."""

    backend = "faiss"

    def __init__(self, index: faiss.Index, use_gpu: bool | None = False) -> None:
        self.cpu_index = index
        self._lock = threading.Lock()
        self.index, self.on_gpu = _to_gpu(index) if use_gpu in (None, True) else (index, False)
        if use_gpu is True and not self.on_gpu:
            log.warning("GPU requested but FAISS has no usable GPU; searching on the CPU")

    @property
    def count(self) -> int:
        return int(self.cpu_index.ntotal)

    @property
    def dim(self) -> int:
        return int(self.cpu_index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).copy()
        faiss.normalize_L2(q)
        if self.on_gpu:
            with self._lock:
                return self.index.search(q, k)
        return self.index.search(q, k)

    def add(self, embeddings: np.ndarray, items: Sequence[dict[str, Any]]) -> None:
        x = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
        faiss.normalize_L2(x)
        with self._lock:
            self.cpu_index.add(x)
            self.index, self.on_gpu = _to_gpu(self.cpu_index) if self.on_gpu else (self.cpu_index, False)

    def flush(self) -> None:
        pass

    @property
    def write_file(self) -> Callable[[Path], None]:
        return lambda path: faiss.write_index(self.cpu_index, str(path))

    def facts(self) -> dict[str, Any]:
        return {"index_type": type(faiss.downcast_index(self.cpu_index)).__name__}

    def close(self) -> None:
        pass

    @classmethod
    def load(cls, path: Path, manifest: dict[str, Any], use_gpu: bool | None = None) -> FaissStore:
        """Read ``path`` and apply the manifest's search parameters."""
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise GalleryIndexError(f"cannot read FAISS index {path}: {faiss_msg(exc)}") from None
        params = manifest.get("search_params") or {}
        apply_search_params(index, {k: v for k, v in params.items() if k in ("nprobe", "efSearch")})
        return cls(index, use_gpu)

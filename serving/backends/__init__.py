"""Vector stores behind :class:`serving.index.GalleryIndex`: FAISS in process (the default) and Milvus.

A store holds the L2-normalized gallery embeddings under item ids ``0 .. count-1`` and answers top-k inner
product searches; :class:`serving.index.GalleryIndex` adds the item metadata, the manifest and the model
check on top, so the :class:`~serving.retriever.Retriever` API and the ``python -m serving.index`` CLI are the
same for every backend. The manifest names the backend (``backend``; absent means FAISS).

- :mod:`serving.backends.faiss_backend`: a FAISS index in memory, persisted as a file in the index directory.
- :mod:`serving.backends.milvus_backend`: a Milvus collection through ``pymilvus`` (Milvus Lite in a local
  ``.db`` directory, or a Milvus server / cluster at ``http://host:19530``); imported only when used, so the
  FAISS path never needs ``pymilvus``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["VectorStore", "BACKENDS", "normalize_rows", "pad_results"]

BACKENDS = ("faiss", "milvus")


class VectorStore(Protocol):
    """What :class:`serving.index.GalleryIndex` needs from a backend.

    ``search`` may be called from several threads at once; ``add`` is not called concurrently with
    ``search`` on the same object. Inputs are raw (N, D) float32 embeddings; the store normalizes them."""

    backend: str
    on_gpu: bool

    @property
    def count(self) -> int:
        """Vectors this object searches (ids ``0 .. count-1``)."""

    @property
    def dim(self) -> int:
        """Embedding dimension."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(scores (N, k) float32, ids (N, k) int64)``, best first; missing results have id -1."""

    def add(self, embeddings: np.ndarray, items: Sequence[dict[str, Any]]) -> None:
        """Append embeddings under the ids of ``items`` (``count .. count+N-1``; their metadata may be stored)."""

    def flush(self) -> None:
        """Make everything added durable (before the manifest that counts it is written)."""

    @property
    def write_file(self) -> Callable[[Path], None] | None:
        """Writer of the index file kept in the index directory, or ``None`` if the vectors live elsewhere."""

    def facts(self) -> dict[str, Any]:
        """Backend-specific manifest entries (index type, location, parameters)."""

    def close(self) -> None:
        """Release connections (no-op in process)."""


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """A float32 copy of (N, D) ``x`` with unit rows (zero rows stay zero), as ``faiss.normalize_L2``."""
    y = np.array(x, dtype=np.float32, copy=True, order="C")
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    np.divide(y, norms, out=y, where=norms > 0)
    return y


def pad_results(hits: list[list[tuple[int, float]]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` arrays of shape (len(hits), k) from per-query ``[(id, score), ...]`` lists, padded
    like FAISS (id -1, score = lowest float32)."""
    ids = np.full((len(hits), k), -1, dtype=np.int64)
    scores = np.full((len(hits), k), np.finfo(np.float32).min, dtype=np.float32)
    for row, hs in enumerate(hits):
        for col, (i, s) in enumerate(hs[:k]):
            ids[row, col], scores[row, col] = i, s
    return scores, ids

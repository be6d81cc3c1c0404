"""Pseudo identity labels: DBSCAN on the sparse Jaccard distance (Sec. 3.1, clustering stage)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import DBSCAN

from .jaccard import jaccard_distance

__all__ = ["pseudo_labels", "relabel_by_first_member"]


def relabel_by_first_member(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters ``0..C-1`` in order of their smallest member index; ``-1`` (outlier) stays.

    The result depends only on the partition, not on the ids the clustering happened to assign.
    """
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {lab.shape}")
    lab = lab.astype(np.int64)
    if lab.size and lab.min() < -1:
        raise ValueError(f"labels must be >= -1, got minimum {lab.min()}")
    out = np.full(lab.shape, -1, dtype=np.int64)
    inlier = lab >= 0
    if not inlier.any():
        return out
    ids, first = np.unique(lab[inlier], return_index=True)
    first_global = np.flatnonzero(inlier)[first]
    order = np.argsort(first_global, kind="stable")
    new_id = np.empty(ids.size, dtype=np.int64)
    new_id[order] = np.arange(ids.size)
    out[inlier] = new_id[np.searchsorted(ids, lab[inlier])]
    return out


def pseudo_labels(
    features: np.ndarray | torch.Tensor | sp.spmatrix | sp.sparray,
    eps: float,
    min_samples: int = 4,
    k1: int = 30,
    k2: int = 6,
    search_batch: int | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Pseudo labels ``(N,)`` int64 from ``DBSCAN(eps, min_samples, metric='precomputed')``.

    ``features`` is either ``(N, D)`` features (the Jaccard distance is computed with ``k1``, ``k2``)
    or an already computed sparse ``(N, N)`` distance such as :func:`jaccard_distance` returns
    (missing entries mean 1.0; stored entries, explicit zeros included, are real distances).
    ``-1`` marks outliers; clusters are numbered ``0..C-1`` by their smallest member index. If DBSCAN
    finds no cluster, all labels are ``-1``.
    """
    eps = float(eps)
    if not 0.0 < eps < 1.0:
        raise ValueError(
            f"eps={eps} must be in (0, 1): missing entries of the sparse Jaccard distance mean 1.0"
        )
    if int(min_samples) != min_samples or min_samples < 1:
        raise ValueError(f"min_samples must be a positive integer, got {min_samples}")
    if sp.issparse(features):
        dist = sp.csr_matrix(features, dtype=np.float32)
        if dist.shape[0] != dist.shape[1]:
            raise ValueError(f"precomputed distance must be square, got shape {dist.shape}")
        if dist.nnz and (dist.data.min() < 0 or not np.isfinite(dist.data).all()):
            raise ValueError("precomputed distance has negative or non-finite entries")
    else:
        dist = jaccard_distance(features, k1=k1, k2=k2, search_batch=search_batch, device=device)
    # sklearn keeps stored entries (explicit zeros included) as candidates and compares them with
    # `<= eps`; it also stores the diagonal itself, so each sample counts towards min_samples.
    labels = DBSCAN(eps=eps, min_samples=int(min_samples), metric="precomputed").fit_predict(dist)
    return relabel_by_first_member(labels)

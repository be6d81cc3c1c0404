"""Literal dense transcription of ``compute_jaccard_distance`` from Cluster Contrast.

Source: alibaba/cluster-contrast-reid, ``clustercontrast/utils/faiss_rerank.py`` (identical in SpCL
``spcl/utils/faiss_rerank.py`` and PPLR ``pplr/utils/faiss_rerank.py``); ``use_float16=False``, the
timing ``print`` removed, torch softmax replaced by its numpy equivalent. The k1 neighbour search is
faiss ``IndexFlatL2`` as in the original (``neighbours="faiss"``) or a stable numpy argsort of the
squared L2 distances (``neighbours="argsort"``, no faiss needed). It is the independent reference that
``tests/test_clustering.py`` and ``benchmarks/bench_clustering.py`` (accuracy check) compare ``scwm.clustering``
with:
dense N x N float32 and per-sample Python loops, exactly as the reference projects run it.
"""

from __future__ import annotations

import numpy as np


def _k_reciprocal_neigh(initial_rank: np.ndarray, i: int, k1: int) -> np.ndarray:
    forward_k_neigh_index = initial_rank[i, : k1 + 1]
    backward_k_neigh_index = initial_rank[forward_k_neigh_index, : k1 + 1]
    fi = np.where(backward_k_neigh_index == i)[0]
    return forward_k_neigh_index[fi]


def _initial_rank(x: np.ndarray, k1: int, neighbours: str) -> np.ndarray:
    if neighbours == "faiss":
        import faiss

        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
        return index.search(x, k1)[1]
    f64 = x.astype(np.float64)
    sq = (f64**2).sum(1)
    l2 = sq[:, None] + sq[None, :] - 2 * f64 @ f64.T
    return np.argsort(l2, axis=1, kind="stable")[:, :k1]


def reference_jaccard_distance(target_features: np.ndarray, k1: int = 20, k2: int = 6,
                               neighbours: str = "argsort") -> np.ndarray:
    """Dense (N, N) k-reciprocal Jaccard distance, as Cluster Contrast computes it."""
    target_features = np.ascontiguousarray(np.asarray(target_features, dtype=np.float32))
    N = target_features.shape[0]
    mat_type = np.float32
    initial_rank = _initial_rank(target_features, k1, neighbours)
    nn_k1 = []
    nn_k1_half = []
    for i in range(N):
        nn_k1.append(_k_reciprocal_neigh(initial_rank, i, k1))
        nn_k1_half.append(_k_reciprocal_neigh(initial_rank, i, int(np.around(k1 / 2))))

    V = np.zeros((N, N), dtype=mat_type)
    for i in range(N):
        k_reciprocal_index = nn_k1[i]
        k_reciprocal_expansion_index = k_reciprocal_index
        for candidate in k_reciprocal_index:
            candidate_k_reciprocal_index = nn_k1_half[candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > 2 / 3 * len(
                candidate_k_reciprocal_index
            ):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        dist = 2 - 2 * (target_features[i][None, :] @ target_features[k_reciprocal_expansion_index].T)
        e = np.exp(-dist - (-dist).max(axis=1, keepdims=True))
        V[i, k_reciprocal_expansion_index] = (e / e.sum(axis=1, keepdims=True)).reshape(-1)
    del nn_k1, nn_k1_half

    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=mat_type)
        for i in range(N):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
        del V_qe
    del initial_rank

    invIndex = []
    for i in range(N):
        invIndex.append(np.where(V[:, i] != 0)[0])

    jaccard_dist = np.zeros((N, N), dtype=mat_type)
    for i in range(N):
        temp_min = np.zeros((1, N), dtype=mat_type)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(
                V[i, indNonZero[j]], V[indImages[j], indNonZero[j]]
            )
        jaccard_dist[i] = 1 - temp_min / (2 - temp_min)
    del invIndex, V

    pos_bool = jaccard_dist < 0
    jaccard_dist[pos_bool] = 0.0
    return jaccard_dist

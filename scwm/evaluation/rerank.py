"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR'17), distance-matrix API as in torchreid ``torchreid/utils/rerank.py``.

Same algorithm and float32 normalisation as the reference; the per-sample Python loops of the reference
are replaced by sparse-matrix operations (k-reciprocal sets as ``A & A.T`` of the k-NN graph, expansion
test by a sparse product, Jaccard by a join over shared neighbours). **Dense**: the
(num_q + num_g)^2 float32 distance matrix is held in memory (O(N^2): ~1.5 GB at Market-1501 scale).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["re_ranking"]

_JOIN_LIMIT = 1 << 24  # (query, gallery, neighbour) triplets per Jaccard block


def _as_2d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _smallest_k(dist: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Indices of the ``k`` smallest entries of each row, ordered by (distance, column index)."""
    n_rows, n_cols = dist.shape
    out = np.empty((n_rows, k), dtype=np.int64)
    for s in range(0, n_rows, block):
        d = np.ascontiguousarray(dist[s : s + block])
        b = d.shape[0]
        if k < n_cols:
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
            thr = np.take_along_axis(d, part, axis=1).max(axis=1)
            rows, cols = np.nonzero(d <= thr[:, None])  # >= k candidates per row (ties included)
        else:
            rows, cols = np.divmod(np.arange(b * n_cols), n_cols)
        order = np.lexsort((cols, d[rows, cols], rows))
        rows, cols = rows[order], cols[order]
        starts = np.searchsorted(rows, np.arange(b))
        pos = np.arange(rows.shape[0]) - starts[rows]
        sel = pos < k
        out[s : s + b] = cols[sel].reshape(b, k)
    return out


def _knn_graph(idx: np.ndarray, n: int) -> sp.csr_matrix:
    rows = np.repeat(np.arange(idx.shape[0]), idx.shape[1])
    return sp.csr_matrix((np.ones(rows.shape[0], dtype=np.int32), (rows, idx.ravel())), shape=(n, n))


def re_ranking(
    q_g_dist: Any,
    q_q_dist: Any,
    g_g_dist: Any,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked (num_q, num_g) float32 distance: ``(1-lambda) * Jaccard + lambda * original``.

    Inputs are distances (e.g. Euclidean or ``1 - cos``); as in the reference they are squared and each
    row of the joint matrix is divided by its maximum. k1, k2, lambda default to the paper's 20, 6, 0.3.
    Nearest-neighbour ties are broken by index (the reference's ``np.argsort`` leaves them unspecified),
    so results equal the reference's up to float32 rounding whenever neighbour lists have no ties.
    """
    q_g = _as_2d(q_g_dist, "q_g_dist")
    q_q = _as_2d(q_q_dist, "q_q_dist")
    g_g = _as_2d(g_g_dist, "g_g_dist")
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q):
        raise ValueError(f"q_q_dist must have shape {(num_q, num_q)} to match q_g_dist, got {q_q.shape}")
    if g_g.shape != (num_g, num_g):
        raise ValueError(f"g_g_dist must have shape {(num_g, num_g)} to match q_g_dist, got {g_g.shape}")
    for name, v in (("k1", k1), ("k2", k2)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value!r}")
    n = num_q + num_g

    # Joint squared distances, float32, each column divided by its max, then transposed (reference).
    full = np.empty((n, n), dtype=np.float32)
    full[:num_q, :num_q] = np.power(q_q, 2)
    full[:num_q, num_q:] = np.power(q_g, 2)
    full[num_q:, :num_q] = np.power(q_g.T, 2)
    full[num_q:, num_q:] = np.power(g_g, 2)
    col_max = full.max(axis=0)
    if not np.all(col_max > 0):
        j = int(np.flatnonzero(~(col_max > 0))[0])
        raise ValueError(f"re_ranking: all distances to sample {j} are zero (or NaN); cannot normalise")
    full /= col_max
    dist = full.T  # dist[i, j] = original_dist[i, j] of the reference

    kf = min(k1 + 1, n)
    kh = min(int(np.around(k1 / 2.0)) + 1, n)
    kq = min(k2, n)
    nn_idx = _smallest_k(dist, max(kf, kq))

    # k-reciprocal sets R and half-size sets Rh: j in R[i] iff j in kNN(i) and i in kNN(j).
    a = _knn_graph(nn_idx[:, :kf], n)
    r = a.multiply(a.T).tocsr()
    ah = _knn_graph(nn_idx[:, :kh], n)
    rh = ah.multiply(ah.T).tocsr()
    # Candidate c in R[i] adds Rh[c] when |Rh[c] & R[i]| > 2/3 |Rh[c]|.
    overlap = (rh @ r.T).multiply(r.T).tocoo()  # (c, i) -> |Rh[c] & R[i]| where c in R[i]
    size_h = np.asarray(rh.sum(axis=1)).ravel()
    ok = overlap.data > 2.0 / 3 * size_h[overlap.row]
    add = sp.csr_matrix((np.ones(int(ok.sum()), dtype=np.int32), (overlap.col[ok], overlap.row[ok])), shape=(n, n))
    expansion = (r + add @ rh).tocsr()
    expansion.sort_indices()

    # V[i, j] = softmax(-dist[i, j]) over the expansion of i (float32 as the reference).
    rows = np.repeat(np.arange(n), np.diff(expansion.indptr))
    cols = expansion.indices
    w = np.exp(-dist[rows, cols])
    w_sum = np.bincount(rows, weights=w, minlength=n)
    v = sp.csr_matrix(((w / w_sum[rows]).astype(np.float64), (rows, cols)), shape=(n, n))
    if k2 != 1:  # local query expansion: mean of the V rows of the k2 nearest neighbours
        qe_rows = np.repeat(np.arange(n), kq)
        qe = sp.csr_matrix((np.full(qe_rows.shape[0], 1.0 / kq), (qe_rows, nn_idx[:, :kq].ravel())), shape=(n, n))
        v = (qe @ v).tocsr()
    v.eliminate_zeros()

    # Jaccard between queries and gallery: sum_k min(V[i,k], V[j,k]) over shared neighbours k.
    vq = v[:num_q].tocsr()
    vg = v[num_q:].tocsc()
    col_count = np.diff(vg.indptr)
    vq_rows = np.repeat(np.arange(num_q), np.diff(vq.indptr))
    row_load = np.bincount(vq_rows, weights=col_count[vq.indices], minlength=num_q)
    final = np.empty((num_q, num_g), dtype=np.float32)
    s = 0
    while s < num_q:
        cum = np.cumsum(row_load[s:])
        e = s + max(1, int(np.searchsorted(cum, _JOIN_LIMIT, side="right")))
        lo, hi = vq.indptr[s], vq.indptr[e]
        qi = np.repeat(np.arange(e - s), np.diff(vq.indptr[s : e + 1]))
        ks, av = vq.indices[lo:hi], vq.data[lo:hi]
        counts = col_count[ks]
        total = int(counts.sum())
        offsets = np.repeat(vg.indptr[ks] - (np.cumsum(counts) - counts), counts) + np.arange(total)
        j = vg.indices[offsets]
        contrib = np.minimum(np.repeat(av, counts), vg.data[offsets])
        key = np.repeat(qi, counts) * num_g + j
        temp = np.bincount(key, weights=contrib, minlength=(e - s) * num_g).reshape(e - s, num_g)
        jaccard = 1.0 - temp / (2.0 - temp)
        final[s:e] = jaccard * (1.0 - lambda_value) + dist[s:e, num_q:] * lambda_value
        s = e
    return final

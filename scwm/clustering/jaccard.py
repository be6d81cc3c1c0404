"""Sparse k-reciprocal Jaccard distance (the clustering distance of Sec. 3.1).

Same definition as ``compute_jaccard_distance`` in Cluster Contrast / SpCL / PPLR
(``clustercontrast/utils/faiss_rerank.py``), which follows Zhong et al., "Re-ranking person re-ID
with k-reciprocal encoding", CVPR 2017:

1. ``R[i]``: the ``k1`` nearest neighbours of ``i`` (the sample itself included, at rank 0).
2. k-reciprocal sets ``S(i) = {j in R[i,:k+1] : i in R[j,:k+1]}`` at ``k = k1`` and ``k = round(k1/2)``
   (the reference search returns only ``k1`` columns, so the ``k1`` set uses ``k1`` entries and the
   half set ``round(k1/2) + 1`` entries; numpy's round-half-to-even, as in the reference).
3. Expansion ``E(i) = S_k1(i) ∪ {S_half(c) : c in S_k1(i), |S_half(c) ∩ S_k1(i)| > 2/3 |S_half(c)|}``.
4. ``V[i, j] = softmax_j(-(2 - 2 cos(x_i, x_j)))`` over ``j in E(i)``, 0 elsewhere.
5. Query expansion (``k2 != 1``): ``V[i] <- mean(V[R[i, :k2]])``.
6. ``d(i, j) = 1 - s / (2 - s)`` with ``s = sum_c min(V[i, c], V[j, c])``, clipped at 0.

Differences from the reference implementation (numbers match it to ~1e-6, see tests):

- Exact neighbour search with batched torch matmul + top-k on L2-normalised features (no faiss).
  The features are always L2-normalised here; the reference uses the raw features as given (its
  callers pass normalised features, and then both agree). The sample itself is forced to rank 0
  (the reference relies on faiss putting it there, which fails for duplicate features).
- ``V`` and the distance are sparse. Pairs without a shared expanded neighbour have ``s = 0``, i.e.
  distance exactly 1.0; they are not stored. The diagonal is always stored as an explicit 0.
- No float16 mode and no ``print``: timing goes to ``logging`` at DEBUG level.
- ``N < k1`` (the reference's faiss search would return ``-1`` indices) clamps ``k1`` (and ``k2``) to
  ``N`` with a warning.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

__all__ = ["jaccard_distance", "topk_neighbours", "as_feature_tensor"]

_LOG = logging.getLogger(__name__)

# Budget (in float32 elements) of one batch x N similarity block.
_BLOCK_ELEMS = 1 << 25
# Budget of (row, shared column, other row) triples per block of the min-sum accumulation.
_TRIPLE_BUDGET = 1 << 22


def as_feature_tensor(
    features: np.ndarray | torch.Tensor, name: str, ndim: int, device: str | torch.device | None = None
) -> torch.Tensor:
    """Return ``features`` as a float32 torch tensor on ``device`` (default: its own device, else CPU)."""
    if isinstance(features, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(features))
    elif isinstance(features, torch.Tensor):
        t = features.detach()
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor, got {type(features).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be numeric, got dtype {t.dtype}")
    if device is not None:
        t = t.to(device)
    t = t.float()
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf values")
    return t


def _auto_batch(n: int, batch: int | None, name: str = "search_batch") -> int:
    if batch is None:
        return max(1, min(n, _BLOCK_ELEMS // max(n, 1)))
    if int(batch) < 1:
        raise ValueError(f"{name} must be >= 1, got {batch}")
    return int(batch)


@torch.no_grad()
def _topk(
    x: torch.Tensor, k: int, self_first: bool, batch: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched exact top-k by dot product: (similarities, indices), both ``(N, k)``."""
    n = x.shape[0]
    limit = n if self_first else n - 1
    if not 1 <= k <= limit:
        raise ValueError(f"k={k} must be in [1, {limit}] for N={n} samples (self_first={self_first})")
    b = _auto_batch(n, batch)
    idx = torch.empty((n, k), dtype=torch.long, device=x.device)
    val = torch.empty((n, k), dtype=x.dtype, device=x.device)
    fill = float("inf") if self_first else float("-inf")
    for s in range(0, n, b):
        e = min(n, s + b)
        sim = x[s:e] @ x.T
        rows = torch.arange(e - s, device=x.device)
        sim[rows, rows + s] = fill
        top = sim.topk(k, dim=1, largest=True, sorted=True)
        idx[s:e], val[s:e] = top.indices, top.values
    if self_first:  # rank 0 holds the sample itself: restore its true self-similarity
        val[:, 0] = (x * x).sum(1)
    return val, idx


def topk_neighbours(
    x: torch.Tensor, k: int, *, self_first: bool, batch: int | None = None
) -> torch.Tensor:
    """Exact cosine k-NN indices ``(N, k)`` of L2-normalised rows ``x``, nearest first, in batches.

    ``self_first=True`` puts each sample at rank 0 (Jaccard neighbour lists include the sample);
    ``self_first=False`` excludes it (kNN sets of Eq. 7). Never holds more than ``batch x N`` scores.
    """
    return _topk(x, k, self_first, batch)[1]


def _knn_graph(rank: np.ndarray, kk: int, n: int) -> sp.csr_matrix:
    """Boolean CSR matrix A[i, j] = 1 iff j is among the first ``kk`` entries of ``rank[i]``."""
    cols = rank[:, :kk].reshape(-1)
    rows = np.repeat(np.arange(n), kk)
    a = sp.csr_matrix((np.ones(cols.size, dtype=np.int32), (rows, cols)), shape=(n, n))
    a.sum_duplicates()
    return a


def _reciprocal(rank: np.ndarray, kk: int, n: int) -> sp.csr_matrix:
    """k-reciprocal sets as a CSR 0/1 matrix: j in S(i) iff j in rank[i,:kk] and i in rank[j,:kk]."""
    a = _knn_graph(rank, kk, n)
    r = a.multiply(a.T).tocsr()
    r.eliminate_zeros()
    r.sort_indices()
    return r.astype(np.int32)


def _expansion(rank: np.ndarray, k1: int, n: int) -> sp.csr_matrix:
    """Expanded k-reciprocal sets E(i) (pattern of a CSR matrix), step 2-3 of the module docstring."""
    k_half = int(np.around(k1 / 2.0))
    s1 = _reciprocal(rank, k1, n)
    sh = _reciprocal(rank, min(k_half + 1, k1), n)
    # overlap[i, c] = |S_half(c) ∩ S_k1(i)|, needed only for c in S_k1(i).
    overlap = (s1 @ sh.T).multiply(s1).tocsr()
    overlap.sort_indices()
    coo = overlap.tocoo()
    half_size = np.diff(sh.indptr).astype(np.float64)
    # Same floating comparison as the reference: len(inter) > 2/3 * len(half_set).
    keep = coo.data > (2 / 3) * half_size[coo.col]
    acc = sp.csr_matrix(
        (np.ones(int(keep.sum()), dtype=np.int32), (coo.row[keep], coo.col[keep])), shape=(n, n)
    )
    e = (s1 + acc @ sh).tocsr()
    e.sum_duplicates()
    e.sort_indices()
    return e


@torch.no_grad()
def _weights(x: torch.Tensor, e: sp.csr_matrix, rank: np.ndarray, rank_sim: np.ndarray) -> sp.csr_matrix:
    """V[i, j] = exp(-(2 - 2 x_i.x_j)) / sum over E(i), for j in E(i) (step 4).

    Dot products of pairs already in the k1 lists come from the search; only the remaining pairs of
    E (neighbours of neighbours) are gathered and multiplied, in chunks.
    """
    n = x.shape[0]
    k1 = rank.shape[1]
    # Offset +2 keeps every stored similarity strictly positive (cosine >= -1), so no value is lost.
    known = sp.csr_matrix(
        ((rank_sim.reshape(-1) + 2.0).astype(np.float64), rank.reshape(-1), np.arange(0, n * k1 + 1, k1)),
        shape=(n, n),
    )
    pattern = sp.csr_matrix((np.ones(e.nnz), e.indices, e.indptr), shape=(n, n))
    hit = pattern.multiply(known).tocsr()
    miss = (pattern - (hit > 0)).tocsr()
    miss.eliminate_zeros()
    m_rows = np.repeat(np.arange(n), np.diff(miss.indptr))
    m_cols = miss.indices
    m_dots = np.empty(m_cols.size, dtype=np.float64)
    chunk = max(1, (_BLOCK_ELEMS // 8) // max(1, x.shape[1]))  # two gathered chunk x D blocks
    for s in range(0, m_cols.size, chunk):
        r = torch.from_numpy(m_rows[s : s + chunk]).to(x.device)
        c = torch.from_numpy(m_cols[s : s + chunk].astype(np.int64)).to(x.device)
        m_dots[s : s + chunk] = (x[r] * x[c]).sum(1).cpu().numpy()
    miss.data = m_dots + 2.0
    full = (hit + miss).tocsr()
    full.sort_indices()
    if full.nnz != e.nnz:
        raise RuntimeError("internal error: similarity lookup lost pairs of the expansion")
    dots = (full.data - 2.0).astype(np.float32)
    rows = np.repeat(np.arange(n), np.diff(full.indptr))
    dist = 2.0 - 2.0 * dots
    w = np.exp(-dist)  # in [e^-4, 1]: no max subtraction needed for stability
    row_sum = np.bincount(rows, weights=w, minlength=n)
    w = (w / row_sum[rows]).astype(np.float32)
    return sp.csr_matrix((w, full.indices, full.indptr), shape=(n, n))


def _query_expansion(v: sp.csr_matrix, rank: np.ndarray, k2: int, n: int) -> sp.csr_matrix:
    """V[i] <- mean of V over the k2 nearest neighbours of i (self included), step 5."""
    q_cols = rank[:, :k2].reshape(-1)
    q_rows = np.repeat(np.arange(n), k2)
    q = sp.csr_matrix((np.full(q_cols.size, 1.0 / k2, dtype=np.float32), (q_rows, q_cols)), shape=(n, n))
    out = (q @ v).tocsr()
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _min_sum_distance(v: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """d = 1 - s/(2 - s), s[i, j] = sum_c min(V[i,c], V[j,c]), over pairs sharing a column (step 6).

    Row blocks: each stored V[i, c] is joined with the column c of V (CSC) and the minima are summed
    into a dense ``block x N`` accumulator with ``bincount``; only ``s > 0`` (``d < 1``) is kept.
    """
    vc = v.tocsc()
    vc.sort_indices()
    col_cnt = np.diff(vc.indptr)
    ent_cnt = col_cnt[v.indices]  # triples generated by each stored entry of V
    row_of_entry = np.repeat(np.arange(n), np.diff(v.indptr))
    row_triples = np.bincount(row_of_entry, weights=ent_cnt, minlength=n).astype(np.int64)
    del row_of_entry
    cum = np.concatenate(([0], np.cumsum(row_triples, dtype=np.int64)))
    max_rows = max(1, (_BLOCK_ELEMS // 4) // max(n, 1))

    data_parts, ind_parts, counts = [], [], np.zeros(n, dtype=np.int64)
    n_diag = 0
    r0 = 0
    while r0 < n:
        r1 = int(np.searchsorted(cum, cum[r0] + _TRIPLE_BUDGET, side="right")) - 1
        r1 = min(n, max(r0 + 1, r1), r0 + max_rows)
        s0, s1 = v.indptr[r0], v.indptr[r1]
        e_rows = np.repeat(np.arange(r1 - r0, dtype=np.int64), np.diff(v.indptr[r0 : r1 + 1]))
        e_cols = v.indices[s0:s1]
        e_vals = v.data[s0:s1]
        cnt = col_cnt[e_cols]
        total = int(cnt.sum())
        rep = np.repeat(np.arange(cnt.size), cnt)
        offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        pos = vc.indptr[e_cols][rep] + offs
        mins = np.minimum(e_vals[rep], vc.data[pos])
        key = e_rows[rep] * n + vc.indices[pos]
        s = np.bincount(key, weights=mins, minlength=(r1 - r0) * n)
        nz = np.flatnonzero(s)
        sv = s[nz]
        d = np.maximum(1.0 - sv / (2.0 - sv), 0.0).astype(np.float32)
        rr = nz // n
        cc = nz % n
        diag = (rr + r0) == cc
        d[diag] = 0.0
        n_diag += int(diag.sum())
        keep = (d < 1.0) | diag
        data_parts.append(d[keep])
        ind_parts.append(cc[keep].astype(np.int32))
        counts[r0:r1] = np.bincount(rr[keep], minlength=r1 - r0)
        r0 = r1
    indptr = np.concatenate(([0], np.cumsum(counts)))
    out = sp.csr_matrix(
        (np.concatenate(data_parts), np.concatenate(ind_parts), indptr), shape=(n, n)
    )
    out.has_sorted_indices = True
    # Every row stores its diagonal since V[i, i] > 0 (i is in its own expansion and k2 list).
    if n_diag != n:
        raise RuntimeError(f"internal error: {n - n_diag} rows lack a stored Jaccard diagonal")
    return out


def jaccard_distance(
    features: np.ndarray | torch.Tensor,
    k1: int = 30,
    k2: int = 6,
    search_batch: int | None = None,
    device: str | torch.device | None = None,
) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distance ``(N, N)`` float32 CSR (missing entries mean 1.0).

    The clustering distance of Sec. 3.1 (DBSCAN on Jaccard distance with k-reciprocal encoding),
    defined exactly as Cluster Contrast / SpCL / PPLR ``compute_jaccard_distance`` (see module
    docstring). ``features`` ``(N, D)`` are L2-normalised; the exact top-k search runs on ``device``
    (default: the tensor's own device, CPU for numpy) in blocks of ``search_batch`` rows; the sparse
    bookkeeping runs in numpy/scipy. The diagonal is stored as explicit zeros.
    """
    t0 = time.perf_counter()
    x = as_feature_tensor(features, "features", 2, device)
    n = x.shape[0]
    if n == 0:
        raise ValueError("features is empty (N=0)")
    if int(k1) < 1 or int(k2) < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    k1, k2 = int(k1), int(k2)
    if k1 > n:
        warnings.warn(f"jaccard_distance: k1={k1} > N={n}; clamping k1 to {n}", stacklevel=2)
        k1 = n
    if k2 > k1:
        # The reference takes initial_rank[i, :k2] of a k1-column array, i.e. min(k2, k1) rows.
        warnings.warn(f"jaccard_distance: k2={k2} > k1={k1}; clamping k2 to {k1}", stacklevel=2)
        k2 = k1
    x = F.normalize(x, dim=1)
    rank_sim, rank = (t.cpu().numpy() for t in _topk(x, k1, True, search_batch))
    t1 = time.perf_counter()
    e = _expansion(rank, k1, n)
    v = _weights(x, e, rank, rank_sim)
    del e
    if k2 != 1:
        v = _query_expansion(v, rank, k2, n)
    t2 = time.perf_counter()
    dist = _min_sum_distance(v, n)
    _LOG.debug(
        "jaccard_distance N=%d k1=%d k2=%d: search %.2fs, encoding %.2fs, distance %.2fs, nnz %d",
        n, k1, k2, t1 - t0, t2 - t1, time.perf_counter() - t2, dist.nnz,
    )
    return dist

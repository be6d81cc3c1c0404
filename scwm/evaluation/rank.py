"""Re-ID ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol of torchreid / fast-reid.

Protocol (torchreid ``eval_market1501``, fast-reid ``evaluate_rank``):

- for each query, gallery entries with the query's pid **and** camera are removed ("junk");
- queries with no remaining gallery entry of their pid are skipped (error if none is valid);
- CMC is the clipped cumulative match curve, averaged over valid queries;
- AP is over the whole ranking: mean over the hits of the precision at each hit;
- INP = (#matches) / (rank of the last match) (fast-reid), mINP is its mean over valid queries.

The implementation is vectorized over queries: for a chunk of distance rows, match / junk masks are
built by broadcasting, and the rank of every match among the kept entries is found without sorting the
gallery (a batched ``searchsorted`` of all entries into the few sorted match distances of each query,
ties resolved by gallery index), which equals the ranking of a stable argsort.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["RankResult", "evaluate_rank", "QueryStats"]

ArrayLike = np.ndarray | torch.Tensor

# Bytes of temporaries per (query, gallery) element in `rank_chunk`, on top of the distance chunk itself:
# bool masks + int64 buckets + gathered values + int32 counts (measured peak ~21-24, rounded up).
_RANK_BYTES_PER_ELEMENT = 28
DEFAULT_MEMORY_BUDGET = 1 << 30  # 1 GiB


@dataclass(frozen=True)
class RankResult:
    """Ranking metrics; every value is a fraction in [0, 1] (multiply by 100 for percents).

    ``cmc[k-1]`` is the rank-k accuracy; ``len(cmc) == min(max_rank, num_gallery)``.
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int = field(default=-1)

    @property
    def rank1(self) -> float:
        """Rank-1 accuracy (fraction)."""
        return float(self.cmc[0])

    def rank(self, k: int) -> float:
        """Rank-``k`` accuracy (fraction), ``1 <= k <= len(cmc)``."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k must be an integer in [1, {len(self.cmc)}], got {k!r}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, Any]:
        """JSON-able dict of plain Python floats/ints (fractions, not percents)."""
        out: dict[str, Any] = {"mAP": float(self.mAP), "mINP": float(self.mINP)}
        for k in (1, 5, 10, 20):
            if k <= len(self.cmc):
                out[f"rank{k}"] = float(self.cmc[k - 1])
        out["cmc"] = [float(v) for v in self.cmc]
        out["num_valid_queries"] = int(self.num_valid_queries)
        out["num_queries"] = int(self.num_queries)
        return out


@dataclass
class QueryStats:
    """Per-query statistics of one or more chunks (internal accumulator, exposed for reuse).

    ``first_rank``/``ap``/``inp`` are meaningful where ``valid`` is True; ranks are 1-based among the
    kept (non-junk) gallery entries.
    """

    valid: np.ndarray  # bool (n,)
    first_rank: np.ndarray  # int64 (n,)
    ap: np.ndarray  # float64 (n,)
    inp: np.ndarray  # float64 (n,)

    @staticmethod
    def concat(parts: list[QueryStats]) -> QueryStats:
        """Concatenate chunk statistics in query order."""
        return QueryStats(
            valid=np.concatenate([p.valid for p in parts]),
            first_rank=np.concatenate([p.first_rank for p in parts]),
            ap=np.concatenate([p.ap for p in parts]),
            inp=np.concatenate([p.inp for p in parts]),
        )


def _as_tensor(x: Any, name: str) -> torch.Tensor:
    """numpy array / tensor / sequence -> tensor (no copy for numpy arrays and tensors)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got dtype object")
    return torch.from_numpy(np.ascontiguousarray(arr))


def check_labels(
    q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, num_q: int, num_g: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate pid/camid vectors against ``num_q``/``num_g`` and return int64 tensors on ``device``."""
    out = []
    for name, x, n, side in (
        ("q_pids", q_pids, num_q, "query"),
        ("g_pids", g_pids, num_g, "gallery"),
        ("q_camids", q_camids, num_q, "query"),
        ("g_camids", g_camids, num_g, "gallery"),
    ):
        t = _as_tensor(x, name)
        if t.dim() != 1:
            raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
        if t.shape[0] != n:
            raise ValueError(f"{name} has length {t.shape[0]} but there are {n} {side} entries")
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must hold integers, got dtype {t.dtype}")
        out.append(t.to(device=device, dtype=torch.int64))
    return out[0], out[1], out[2], out[3]


_TIE_BLOCK = 1 << 16  # tied entries resolved per step in `_hit_ranks_search`


def _hit_ranks_search(
    dist: torch.Tensor, good: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank (1-based, among kept entries) of every true match, without sorting the gallery.

    The matches of each query are sorted by (distance, gallery index) (a few per query); every gallery
    entry is put in the bucket "number of matches that precede it" by ``searchsorted`` (entries with a
    distance equal to a match's are resolved by gallery index); the kept entries per bucket, cumulated,
    give the rank of each match. Same ranks as a stable argsort of the row, in O(G log M) per query.
    Returns ``(rows, hit_no, hit_rank)`` for every match in row-major ranked order (``hit_no`` 1-based).
    """
    c, num_g = dist.shape
    dev = dist.device
    rows, cols = good.nonzero(as_tuple=True)  # row-major, gallery index ascending within a row
    num_good = torch.bincount(rows, minlength=c)
    m = max(1, int(num_good.max()))
    starts = torch.cumsum(num_good, 0) - num_good
    pos = torch.arange(rows.shape[0], device=dev) - starts[rows]
    inf = torch.tensor(float("inf"), dtype=dist.dtype, device=dev)
    gvals = inf.expand(c, m + 1).clone()  # extra +inf column: bucket == m lands there
    gvals[rows, pos] = dist[rows, cols]
    gidx = torch.full((c, m + 1), num_g, dtype=torch.int64, device=dev)
    gidx[rows, pos] = cols
    gvals, perm = torch.sort(gvals, dim=1, stable=True)  # by distance, then by gallery index
    gidx = gidx.gather(1, perm)

    bucket = torch.searchsorted(gvals[:, :m].contiguous(), dist)  # matches strictly closer
    tied = gvals.gather(1, bucket) == dist
    if bool(tied.any()):  # equal distances: matches with a lower gallery index also precede
        tr, tc = tied.nonzero(as_tuple=True)
        for s in range(0, tr.shape[0], _TIE_BLOCK):
            r, k = tr[s : s + _TIE_BLOCK], tc[s : s + _TIE_BLOCK]
            before = (gvals[r, :m] == dist[r, k][:, None]) & (gidx[r, :m] < k[:, None])
            bucket[r, k] += before.sum(dim=1)
    del tied
    kept_per_bucket = torch.zeros((c, m + 1), dtype=torch.int32, device=dev)
    kept_per_bucket.scatter_add_(1, bucket, keep.to(torch.int32))
    del bucket
    ranks = torch.cumsum(kept_per_bucket, dim=1)  # ranks[r, t]: kept entries up to the t-th match
    hit_rank = ranks[rows, pos]  # rows/pos enumerate matches; pos t has rank ranks[r, t]
    return rows, pos + 1, hit_rank


def _hit_ranks_sort(
    dist: torch.Tensor, good: torch.Tensor, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same output as :func:`_hit_ranks_search` via a stable argsort of each row (reference path)."""
    order = torch.argsort(dist, dim=1, stable=True)
    good_sorted = good.gather(1, order)
    kept_rank = torch.cumsum(keep.gather(1, order), dim=1, dtype=torch.int32)
    del order
    rows, cols = good_sorted.nonzero(as_tuple=True)
    num_good = torch.bincount(rows, minlength=dist.shape[0])
    starts = torch.cumsum(num_good, 0) - num_good
    hit_no = torch.arange(rows.shape[0], device=dist.device) - starts[rows] + 1
    return rows, hit_no, kept_rank[rows, cols]


def rank_chunk(
    dist: torch.Tensor,
    q_pids: torch.Tensor,
    q_camids: torch.Tensor,
    g_pids: torch.Tensor,
    g_camids: torch.Tensor,
    *,
    use_sort: bool = False,
) -> QueryStats:
    """Per-query first-match rank, AP and INP for a (c, G) chunk of distances (vectorized).

    The ranking is that of a stable sort on distance: ties go to the lower gallery index. By default it
    is computed without sorting the gallery (:func:`_hit_ranks_search`); ``use_sort=True`` sorts.
    """
    if torch.isnan(dist).any():
        bad = int(torch.isnan(dist).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"distance matrix contains NaN (chunk row {bad})")
    c = dist.shape[0]
    pid_eq = q_pids[:, None] == g_pids[None, :]
    cam_eq = q_camids[:, None] == g_camids[None, :]
    good = pid_eq & ~cam_eq  # true matches: same pid, other camera
    keep = ~(pid_eq & cam_eq)  # junk (same pid and camera) removed
    del pid_eq, cam_eq
    rows_t, hit_no_t, hit_rank_t = (_hit_ranks_sort if use_sort else _hit_ranks_search)(dist, good, keep)
    del good, keep
    rows = rows_t.cpu().numpy()
    hit_no = hit_no_t.cpu().numpy().astype(np.int64)
    hit_rank = hit_rank_t.cpu().numpy().astype(np.int64)

    num_good = np.bincount(rows, minlength=c)
    starts = np.cumsum(num_good) - num_good  # offset of each query's first hit in the flat arrays
    precision = hit_no / hit_rank.astype(np.float64)  # torchreid: cumsum / (i + 1.) at each hit
    ap_sum = np.bincount(rows, weights=precision, minlength=c)  # sequential, deterministic

    valid = num_good > 0
    first_rank = np.zeros(c, dtype=np.int64)
    last_rank = np.ones(c, dtype=np.int64)
    first_rank[valid] = hit_rank[starts[valid]]
    last_rank[valid] = hit_rank[starts[valid] + num_good[valid] - 1]
    ap = np.where(valid, ap_sum / np.maximum(num_good, 1), 0.0)
    inp = np.where(valid, num_good / last_rank.astype(np.float64), 0.0)  # fast-reid mINP
    return QueryStats(valid=valid, first_rank=first_rank, ap=ap, inp=inp)


def aggregate(stats: QueryStats, max_rank: int, num_g: int) -> RankResult:
    """Average per-query statistics into a :class:`RankResult` (CMC length ``min(max_rank, num_g)``)."""
    num_valid = int(stats.valid.sum())
    if num_valid == 0:
        raise ValueError(
            f"no valid query: none of the {stats.valid.shape[0]} queries has a gallery entry with its pid "
            "from another camera"
        )
    length = min(max_rank, num_g)
    first = stats.first_rank[stats.valid] - 1
    counts = np.bincount(np.minimum(first, length), minlength=length + 1)[:length]
    cmc = np.cumsum(counts).astype(np.float64) / num_valid
    return RankResult(
        cmc=cmc,
        mAP=float(np.mean(stats.ap[stats.valid])),
        mINP=float(np.mean(stats.inp[stats.valid])),
        num_valid_queries=num_valid,
        num_queries=int(stats.valid.shape[0]),
    )


def check_max_rank(max_rank: Any, num_g: int) -> int:
    """Validate ``max_rank``; warn (as torchreid does) when the gallery is smaller."""
    if not isinstance(max_rank, (int, np.integer)) or isinstance(max_rank, bool) or max_rank < 1:
        raise ValueError(f"max_rank must be a positive integer, got {max_rank!r}")
    if num_g < max_rank:
        warnings.warn(
            f"gallery has only {num_g} entries < max_rank={max_rank}; CMC is computed up to rank {num_g}",
            UserWarning,
            stacklevel=3,
        )
    return int(max_rank)


def chunk_rows(bytes_per_row: int, memory_budget_bytes: int, total: int) -> int:
    """Rows per chunk so that ``rows * bytes_per_row <= memory_budget_bytes`` (at least 1)."""
    if memory_budget_bytes <= 0:
        raise ValueError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    return max(1, min(total, memory_budget_bytes // max(1, bytes_per_row)))


def evaluate_rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> RankResult:
    """CMC, mAP and mINP of a (num_query, num_gallery) distance matrix, Market-1501 protocol.

    Same numbers as torchreid ``eval_market1501`` (CMC, mAP) and fast-reid ``eval_market1501`` (mINP)
    whenever no query row has tied distances. Ties: we rank with a *stable* sort, i.e. by distance then
    by gallery index, whereas torchreid / fast-reid use ``np.argsort``'s default (non-stable) quicksort,
    whose order among equal distances is unspecified.

    Gallery smaller than ``max_rank``: like torchreid, a warning is issued and the CMC has
    ``min(max_rank, num_gallery)`` entries. A valid query whose kept (non-junk) list is shorter than the
    CMC counts as matched at every later rank (its curve has reached 1), where torchreid would fail on
    ragged arrays.

    ``distmat`` may be a numpy array or a torch tensor (CPU or CUDA; computed on its device). Query rows
    are ranked in chunks whose temporaries stay within ``memory_budget_bytes``.
    """
    dist = _as_tensor(distmat, "distmat")
    if dist.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}")
    if not dist.is_floating_point():
        dist = dist.to(torch.float64)
    elif dist.dtype in (torch.float16, torch.bfloat16):
        dist = dist.float()  # exact widening, same order
    num_q, num_g = dist.shape
    if num_q == 0 or num_g == 0:
        raise ValueError(f"distmat must be non-empty, got shape {(num_q, num_g)}")
    max_rank = check_max_rank(max_rank, num_g)
    qp, gp, qc, gc = check_labels(q_pids, g_pids, q_camids, g_camids, num_q, num_g, dist.device)
    step = chunk_rows(num_g * (_RANK_BYTES_PER_ELEMENT + dist.element_size()), memory_budget_bytes, num_q)
    parts = [rank_chunk(dist[s : s + step], qp[s : s + step], qc[s : s + step], gp, gc) for s in range(0, num_q, step)]
    return aggregate(QueryStats.concat(parts), max_rank, num_g)

"""Weighted centroid memory (paper Sec. 3.3, Eq. 8-9).

One global memory ``global_centroids (C, D)`` and one memory per foreground part
``part_centroids (P, C, D)`` (the background has no feature, so ``P = num_parts - 1``). Every row is
L2-normalized. Centroids are rebuilt every epoch from the cluster means (:meth:`WeightedMemory.from_features`)
and moved during the epoch by momentum updates (:meth:`WeightedMemory.update`).

Reading of Eq. 8-9 (documented decision)
----------------------------------------
Eq. 8 L1-normalises the difficulty weights "within a batch", while Eq. 9 moves each centroid ``c_j``
with the features of *its own* cluster ``C_j``. Taken literally (weights summing to 1 over the whole
batch) the ``(1 - m) * w * f`` term of a cluster carries only ``sum_{i in C_j} w_i`` ~ ``K / B`` of the
update: with the PK sampler (B = 64 = 16 identities x 4 instances) and uniform weights that is 1/16, so
``c <- 0.2 c + 0.8 / 16 * mean(f) = 0.2 c + 0.05 mean(f)`` and, after re-normalisation, the batch
contributes only 0.05 / 0.25 = 20 % of the new centroid instead of 80 %: the memory momentum silently
becomes 0.8 instead of the paper's 0.2, and it would change with the batch size and with how many
identities a batch holds. We therefore read Eq. 8 as normalising the weights of the samples *of the
same cluster* in the batch (``weight_normalization="cluster"``, default): every centroid update is a
convex combination ``c <- m c + (1 - m) sum_{i in C_j} w_i f_i`` with ``sum_{i in C_j} w_i = 1``, i.e. the
"average" update with the uniform weights replaced by the difficulty weights, and m keeps its meaning.
The literal batch-wide form is available as ``weight_normalization="batch"`` (all samples of a cluster
then move its centroid simultaneously with their batch-normalised weights).

Relation to Cluster Contrast (``CM`` / ``CM_Hard``)
---------------------------------------------------
Cluster Contrast's ``CM`` loops over the batch and applies ``c <- normalize(m c + (1 - m) f)`` once per
sample, so the result depends on the order of the samples and the last sample of a cluster dominates
(with m = 0.2 and 4 instances the weights are ~0.8, 0.16, 0.03, 0.006 from last to first, the old
centroid keeps 0.2^4). ``"average"`` uses the order-independent vectorised form
``c <- normalize(m c + (1 - m) mean_{i in C_j} f_i)``. ``"hardest"`` is ``CM_Hard``: per cluster (and,
for parts, per part) the batch sample least similar to the current centroid is used.

All updates run under ``no_grad``, for all clusters of the batch at once (``index_add`` over labels),
without host synchronisation. ``update`` is a pure function of its inputs and the current buffers: under
DDP the trainer all-gathers features, labels and difficulties first, so every rank applies the same update.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UpdateStrategy = Literal["average", "hardest", "weighted"]
WeightNormalization = Literal["cluster", "batch"]

_STRATEGIES = ("average", "hardest", "weighted")
_NORMALIZATIONS = ("cluster", "batch")


def difficulty_weights(
    alpha_global: Tensor, alpha_parts: Tensor, eps: float = 1e-12
) -> tuple[Tensor, Tensor]:
    """Sample weights of Eq. 8, L1-normalised over the batch.

    ``w_global = (1 - alpha^g) / sum_i (1 - alpha_i^g)`` (hard global features weigh more) and
    ``w_parts[:, k] = alpha^{p_k} / sum_i alpha_i^{p_k}`` (reliable parts weigh more), each part column
    normalised separately. A column whose weights are all zero stays zero (``eps`` guards the division).

    Args:
        alpha_global: ``(B,)`` difficulty of the global features (Eq. 7), in ``[0, 1]``.
        alpha_parts: ``(B, P)`` kNN agreement of each part with the global feature (Eq. 7), in ``[0, 1]``.
    Returns:
        ``(w_global (B,), w_parts (B, P))``.
    """
    if alpha_global.dim() != 1 or alpha_parts.dim() != 2 or alpha_parts.shape[0] != alpha_global.shape[0]:
        raise ValueError(
            f"expected alpha_global (B,) and alpha_parts (B, P), got {tuple(alpha_global.shape)} "
            f"and {tuple(alpha_parts.shape)}"
        )
    raw_g = 1.0 - alpha_global
    w_global = raw_g / raw_g.sum().clamp_min(eps)
    w_parts = alpha_parts / alpha_parts.sum(dim=0, keepdim=True).clamp_min(eps)
    return w_global, w_parts


def _cluster_normalize(weights: Tensor, index: Tensor, num_groups: int, eps: float = 1e-12) -> Tensor:
    """Divide each weight by the sum of the weights sharing its group index (no host sync)."""
    sums = torch.zeros(num_groups, dtype=weights.dtype, device=weights.device).index_add_(0, index, weights)
    return weights / sums[index].clamp_min(eps)


def _hardest_onehot(sims: Tensor, index: Tensor, valid: Tensor, num_groups: int) -> Tensor:
    """1.0 for the (first) sample of lowest similarity within each group, else 0.0 (``CM_Hard`` selection)."""
    inf = torch.finfo(sims.dtype).max
    masked = torch.where(valid, sims, torch.full_like(sims, inf))
    group_min = torch.full((num_groups,), inf, dtype=sims.dtype, device=sims.device)
    group_min = group_min.scatter_reduce(0, index, masked, reduce="amin", include_self=True)
    is_min = valid & (masked <= group_min[index])
    positions = torch.arange(sims.shape[0], device=sims.device)
    sentinel = sims.shape[0]
    candidate = torch.where(is_min, positions, torch.full_like(positions, sentinel))
    first = torch.full((num_groups,), sentinel, dtype=positions.dtype, device=sims.device)
    first = first.scatter_reduce(0, index, candidate, reduce="amin", include_self=True)
    return (is_min & (positions == first[index])).to(sims.dtype)


def _momentum_update(
    centroids: Tensor, index: Tensor, feats: Tensor, weights: Tensor, valid: Tensor, momentum: float
) -> Tensor:
    """Eq. 9 for all groups at once: ``c_g <- normalize(m c_g + (1 - m) sum_{i in g} w_i f_i)``.

    ``centroids (G, D)``, ``index (M,)`` group of every sample, ``feats (M, D)``, ``weights (M,)`` already
    normalised. Groups without a valid sample in the batch are returned unchanged.
    """
    num_groups = centroids.shape[0]
    weights = weights * valid.to(weights.dtype)
    agg = torch.zeros_like(centroids).index_add_(0, index, feats * weights.unsqueeze(1))
    present = torch.zeros(num_groups, dtype=centroids.dtype, device=centroids.device)
    present = present.index_add_(0, index, valid.to(centroids.dtype)) > 0
    moved = F.normalize(momentum * centroids + (1.0 - momentum) * agg, dim=1)
    return torch.where(present.unsqueeze(1), moved, centroids)


class WeightedMemory(nn.Module):
    """Global and part cluster-centroid memory with momentum updates (Eq. 9).

    Buffers: ``global_centroids (C, D)`` and ``part_centroids (P, C, D)``, L2-normalized rows.

    Args:
        global_centroids: initial ``(C, D)`` centroids.
        part_centroids: initial ``(P, C, D)`` centroids.
        tau: temperature of :meth:`logits` (paper: 0.05).
        momentum: m of Eq. 9 (paper: 0.2; weight of the *old* centroid).
        update_strategy: ``"average"`` (batch mean), ``"hardest"`` (``CM_Hard``) or ``"weighted"`` (Eq. 8-9).
        weight_normalization: ``"cluster"`` (default, convex combination per centroid) or ``"batch"``
            (literal Eq. 8); only used by ``"weighted"``. See the module docstring.
    """

    global_centroids: Tensor
    part_centroids: Tensor

    def __init__(
        self,
        global_centroids: Tensor,
        part_centroids: Tensor,
        tau: float = 0.05,
        momentum: float = 0.2,
        update_strategy: UpdateStrategy = "weighted",
        weight_normalization: WeightNormalization = "cluster",
    ) -> None:
        super().__init__()
        if update_strategy not in _STRATEGIES:
            raise ValueError(f"update_strategy must be one of {_STRATEGIES}, got {update_strategy!r}")
        if weight_normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"weight_normalization must be one of {_NORMALIZATIONS}, got {weight_normalization!r}"
            )
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if tau <= 0:
            raise ValueError(f"tau must be positive, got {tau!r}")
        if global_centroids.dim() != 2 or part_centroids.dim() != 3:
            raise ValueError(
                f"expected global_centroids (C, D) and part_centroids (P, C, D), got "
                f"{tuple(global_centroids.shape)} and {tuple(part_centroids.shape)}"
            )
        if part_centroids.shape[1:] != global_centroids.shape:
            raise ValueError(
                f"part_centroids {tuple(part_centroids.shape)} do not match global_centroids "
                f"{tuple(global_centroids.shape)} in (C, D)"
            )
        self.tau = float(tau)
        self.momentum = float(momentum)
        self.update_strategy: UpdateStrategy = update_strategy
        self.weight_normalization: WeightNormalization = weight_normalization
        self.register_buffer("global_centroids", global_centroids.detach().clone())
        self.register_buffer("part_centroids", part_centroids.detach().clone())

    @property
    def num_clusters(self) -> int:
        return self.global_centroids.shape[0]

    @property
    def num_parts(self) -> int:
        return self.part_centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.global_centroids.shape[1]

    @classmethod
    @torch.no_grad()
    def from_features(
        cls,
        global_feats: Tensor,
        part_feats: Tensor,
        labels: Tensor,
        num_clusters: int | None = None,
        **kwargs: object,
    ) -> WeightedMemory:
        """Initialise from L2-normalized cluster means (Sec. 3.1); outliers (label -1) are excluded.

        ``global_feats (N, D)``, ``part_feats (N, P, D)``, ``labels (N,)``. ``num_clusters`` defaults to
        ``labels.max() + 1`` (one host sync, at initialisation only). A cluster id without members gets a
        zero centroid. Other keyword arguments go to the constructor.
        """
        if global_feats.dim() != 2 or part_feats.dim() != 3 or labels.dim() != 1:
            raise ValueError(
                f"expected global_feats (N, D), part_feats (N, P, D), labels (N,), got "
                f"{tuple(global_feats.shape)}, {tuple(part_feats.shape)}, {tuple(labels.shape)}"
            )
        n, d = global_feats.shape
        if part_feats.shape[0] != n or part_feats.shape[2] != d or labels.shape[0] != n:
            raise ValueError(
                f"inconsistent shapes: global_feats {tuple(global_feats.shape)}, part_feats "
                f"{tuple(part_feats.shape)}, labels {tuple(labels.shape)}"
            )
        labels = labels.long()
        if num_clusters is None:
            num_clusters = int(labels.max().item()) + 1 if n > 0 else 0
        num_clusters = max(int(num_clusters), 0)
        num_parts = part_feats.shape[1]
        valid = (labels >= 0) & (labels < num_clusters)
        idx = labels.clamp(0, max(num_clusters - 1, 0))
        mask = valid.to(global_feats.dtype).unsqueeze(1)
        g = torch.zeros(num_clusters, d, dtype=global_feats.dtype, device=global_feats.device)
        g.index_add_(0, idx, global_feats * mask)
        flat = torch.arange(num_parts, device=labels.device).unsqueeze(0) * num_clusters + idx.unsqueeze(1)
        p = torch.zeros(num_parts * num_clusters, d, dtype=part_feats.dtype, device=part_feats.device)
        p.index_add_(0, flat.reshape(-1), (part_feats * mask.unsqueeze(1)).reshape(-1, d))
        g = F.normalize(g, dim=1)
        p = F.normalize(p, dim=1).reshape(num_parts, num_clusters, d)
        return cls(g, p, **kwargs)  # type: ignore[arg-type]

    def logits(self, global_feats: Tensor, part_feats: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Similarity logits ``f . c / tau``: ``(B, C)`` global and ``(B, P, C)`` parts (Eq. 10).

        Differentiable w.r.t. the features only (the centroids are buffers).
        """
        g = global_feats @ self.global_centroids.to(global_feats.dtype).t() / self.tau
        if part_feats is None:
            return g, None
        p = torch.einsum("bpd,pcd->bpc", part_feats, self.part_centroids.to(part_feats.dtype)) / self.tau
        return g, p

    def forward(self, global_feats: Tensor, part_feats: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Alias of :meth:`logits`."""
        return self.logits(global_feats, part_feats)

    @torch.no_grad()
    def update(
        self,
        global_feats: Tensor,
        part_feats: Tensor,
        labels: Tensor,
        alpha_global: Tensor | None = None,
        alpha_parts: Tensor | None = None,
    ) -> None:
        """Momentum update (Eq. 9) of every cluster present in the batch, then re-normalisation.

        ``global_feats (B, D)``, ``part_feats (B, P, D)``, ``labels (B,)`` (samples with label -1 are
        ignored). ``"weighted"`` needs ``alpha_parts (B, P)``; ``alpha_global`` defaults to its mean over
        parts (Eq. 7). Weights of Eq. 8: ``1 - alpha^g`` (global) and ``alpha^{p_k}`` (parts). A cluster
        whose weights in the batch are all zero keeps its centroid.
        """
        strategy = self.update_strategy
        b, p = part_feats.shape[0], part_feats.shape[1]
        c, d = self.num_clusters, self.dim
        if global_feats.shape != (b, d) or part_feats.shape != (b, self.num_parts, d) or labels.shape != (b,):
            raise ValueError(
                f"expected global_feats (B, {d}), part_feats (B, {self.num_parts}, {d}), labels (B,), got "
                f"{tuple(global_feats.shape)}, {tuple(part_feats.shape)}, {tuple(labels.shape)}"
            )
        dtype = self.global_centroids.dtype
        gf = global_feats.detach().to(dtype)
        pf = part_feats.detach().to(dtype)
        labels = labels.long()
        valid = (labels >= 0) & (labels < c)
        idx = labels.clamp(0, max(c - 1, 0))
        part_offsets = torch.arange(p, device=labels.device).unsqueeze(0) * c
        flat = (part_offsets + idx.unsqueeze(1)).reshape(-1)  # (B*P,) index into P*C groups
        valid_p = valid.unsqueeze(1).expand(b, p).reshape(-1)
        pf_flat = pf.reshape(b * p, d)
        part_c = self.part_centroids.reshape(p * c, d)

        if strategy == "average":
            wg = _cluster_normalize(valid.to(dtype), idx, c)
            wp = _cluster_normalize(valid_p.to(dtype), flat, p * c)
        elif strategy == "hardest":
            sims_g = (gf * self.global_centroids[idx]).sum(1)
            sims_p = (pf_flat * part_c[flat]).sum(1)
            wg = _hardest_onehot(sims_g, idx, valid, c)
            wp = _hardest_onehot(sims_p, flat, valid_p, p * c)
        else:
            if alpha_parts is None:
                raise ValueError("update_strategy='weighted' needs alpha_parts (B, P) (Eq. 7)")
            ap = alpha_parts.detach().to(dtype)
            if ap.shape != (b, p):
                raise ValueError(f"expected alpha_parts ({b}, {p}), got {tuple(alpha_parts.shape)}")
            ag = ap.mean(dim=1) if alpha_global is None else alpha_global.detach().to(dtype)
            if ag.shape != (b,):
                raise ValueError(f"expected alpha_global ({b},), got {tuple(ag.shape)}")
            raw_g = (1.0 - ag) * valid.to(dtype)
            raw_p = ap * valid.to(dtype).unsqueeze(1)
            if self.weight_normalization == "cluster":
                wg = _cluster_normalize(raw_g, idx, c)
                wp = _cluster_normalize(raw_p.reshape(-1), flat, p * c)
            else:  # literal Eq. 8: L1 over the whole batch (per part column for parts)
                wg = raw_g / raw_g.sum().clamp_min(1e-12)
                wp = (raw_p / raw_p.sum(dim=0, keepdim=True).clamp_min(1e-12)).reshape(-1)

        new_g = _momentum_update(self.global_centroids, idx, gf, wg, valid, self.momentum)
        self.global_centroids.copy_(new_g)
        new_p = _momentum_update(part_c, flat, pf_flat, wp, valid_p, self.momentum)
        self.part_centroids.copy_(new_p.reshape(p, c, d))

    def extra_repr(self) -> str:
        return (
            f"num_clusters={self.num_clusters}, num_parts={self.num_parts}, dim={self.dim}, tau={self.tau}, "
            f"momentum={self.momentum}, update_strategy={self.update_strategy!r}, "
            f"weight_normalization={self.weight_normalization!r}"
        )

"""Memory-based contrastive losses of the weighted memory (paper Sec. 3.3, Eq. 10-11).

Part averaging: the paper writes ``1/l sum_{k=1}^{l}`` with l counting the background, but part
features (and part centroids) exist only for the ``P = l - 1`` foreground parts; we average over the P
foreground parts (a plain mean over the part axis).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from scwm.memory.weighted import WeightedMemory

CentroidSource = WeightedMemory | tuple[Tensor, Tensor | None]


def _centroids(source: CentroidSource, tau: float | None) -> tuple[Tensor, Tensor | None, float]:
    """Return ``(global (C, D), parts (P, C, D) | None, tau)`` detached, from a memory or a tuple."""
    if isinstance(source, WeightedMemory):
        return source.global_centroids, source.part_centroids, source.tau if tau is None else float(tau)
    if isinstance(source, (tuple, list)) and len(source) == 2:
        g, p = source
        return g.detach(), None if p is None else p.detach(), 0.05 if tau is None else float(tau)
    raise ValueError(
        f"memory_or_centroids must be a WeightedMemory or a (global_centroids, part_centroids) pair, "
        f"got {type(source).__name__}"
    )


def _reduce(ce: Tensor, weights: Tensor | None, literal: bool, eps: float) -> Tensor:
    """Reduce per-sample terms ``ce (B, ...)`` over the batch axis with optional sample weights."""
    if weights is None:
        return ce.mean(dim=0)
    if weights.shape != ce.shape:
        raise ValueError(
            f"weights of shape {tuple(weights.shape)} do not match the batch terms {tuple(ce.shape)}"
        )
    w = weights.detach().to(ce.dtype)
    w = w / w.sum(dim=0, keepdim=True).clamp_min(eps)  # Eq. 8: L1 over the batch (per part column)
    if literal:
        return (ce - torch.log(w.clamp_min(eps))).mean(dim=0)
    return (w * ce).sum(dim=0)


def cluster_nce_terms(feats: Tensor, labels: Tensor, centroids: Tensor, tau: float = 0.05) -> Tensor:
    """Per-sample ClusterNCE ``-log softmax(f . c / tau)[y]`` (the terms of Eq. 10 without weights).

    ``(B, D)`` features give ``(B,)`` terms, ``(B, P, D)`` features give ``(B, P)``.

    ``centroids`` is ``(C, D)`` for global features and ``(P, C, D)`` for part features.
    """
    if feats.dim() == 2:
        logits = feats @ centroids.to(feats.dtype).t() / tau
        return F.cross_entropy(logits, labels, reduction="none")
    logits = torch.einsum("bpd,pcd->bcp", feats, centroids.to(feats.dtype)) / tau  # class axis = 1
    return F.cross_entropy(logits, labels.unsqueeze(1).expand(-1, feats.shape[1]), reduction="none")


def wnce_loss(
    global_feats: Tensor,
    part_feats: Tensor | None,
    labels: Tensor,
    memory_or_centroids: CentroidSource,
    w_global: Tensor | None = None,
    w_parts: Tensor | None = None,
    tau: float | None = None,
    literal: bool = False,
    eps: float = 1e-12,
) -> Tensor:
    """Weighted ClusterNCE, Eq. 10: global term + mean over the P foreground parts.

    Default (intended) form: per-sample weighting of the contrastive cross-entropies,
    ``sum_i w_i CE_i`` with ``w`` L1-normalised over the batch (per part column), i.e. a weighted mean.
    As printed, Eq. 10 puts ``w`` inside the log; that only adds ``-log w_i`` with zero gradient w.r.t.
    the features. ``literal=True`` computes that form: ``mean_i (CE_i - log w_i)`` (= unweighted
    ClusterNCE + constant). Without weights both forms are Cluster Contrast's ClusterNCE,
    ``cross_entropy(f . c / tau, y)`` averaged over the batch.

    Args:
        global_feats: ``(B, D)`` L2-normalized; part_feats: ``(B, P, D)`` or ``None`` (global term only).
        labels: ``(B,)`` pseudo labels in ``[0, C)`` (outliers must be removed beforehand).
        memory_or_centroids: a :class:`WeightedMemory` or ``(global (C, D), parts (P, C, D) | None)``.
        w_global, w_parts: ``(B,)`` / ``(B, P)`` Eq. 8 weights (re-normalised here; detached).
        tau: temperature; ``None`` = the memory's (0.05 for raw centroids).
    """
    g_c, p_c, t = _centroids(memory_or_centroids, tau)
    loss = _reduce(cluster_nce_terms(global_feats, labels, g_c, t), w_global, literal, eps)
    if part_feats is not None and part_feats.shape[1] > 0:
        if p_c is None:
            raise ValueError("part_feats given but no part centroids (P, C, D)")
        ce_p = cluster_nce_terms(part_feats, labels, p_c, t)
        loss = loss + _reduce(ce_p, w_parts, literal, eps).mean()
    return loss


def part_separation_loss(
    part_feats: Tensor,
    labels: Tensor,
    part_centroids: Tensor | WeightedMemory,
    tau: float | None = None,
) -> Tensor:
    """Part separation, Eq. 11: ``-mean_k log softmax_j(f^{p_k} . c_+^{p_j} / tau)[j = k]``.

    ``c_+^{p_j}`` is the part-j centroid of the sample's own cluster; the softmax runs over the P
    foreground parts; the loss is averaged over parts and over the batch.
    ``part_feats (B, P, D)``, ``labels (B,)``, ``part_centroids (P, C, D)`` or a :class:`WeightedMemory`.
    """
    if isinstance(part_centroids, WeightedMemory):
        t = part_centroids.tau if tau is None else float(tau)
        centroids = part_centroids.part_centroids
    else:
        t = 0.05 if tau is None else float(tau)
        centroids = part_centroids.detach()
    b, p, _ = part_feats.shape
    own = centroids[:, labels].transpose(0, 1).to(part_feats.dtype)  # (B, P_j, D)
    logits = torch.einsum("bkd,bjd->bjk", part_feats, own) / t  # class axis (j) = 1
    target = torch.arange(p, device=part_feats.device).unsqueeze(0).expand(b, p)
    return F.cross_entropy(logits, target)

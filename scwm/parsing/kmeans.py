"""Batched k-means for cascaded clustering (Sec. 3.2): every image of a batch clusters its own points in
lock-step, with a per-point validity mask; used by step 1 (1-D on the saliency) and by ISP's original step 2.
Deterministic initialisation: quantile or farthest-point centres (see :func:`batched_kmeans`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["batched_kmeans"]


def _sq_dists(x: Tensor, c: Tensor, xx: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances ``(B, N, K)`` between points ``(B, N, D)`` and centres ``(B, K, D)``."""
    if x.shape[-1] == 1:
        return (x - c.transpose(1, 2)) ** 2
    if xx is None:
        xx = (x * x).sum(-1, keepdim=True)
    d = xx - 2.0 * torch.bmm(x, c.transpose(1, 2)) + (c * c).sum(-1).unsqueeze(1)
    return d.clamp_min_(0.0)


def _quantile_init(x: Tensor, mask: Tensor, k: int) -> Tensor:
    """Centres at the ``(j + 0.5) / k`` quantiles of the valid values of 1-D data ``x (B, N, 1)``."""
    b, n, _ = x.shape
    vals = torch.where(mask, x[..., 0], torch.full_like(x[..., 0], math.inf))
    srt = vals.sort(dim=1).values
    cnt = mask.sum(1).clamp_min(1)
    q = (torch.arange(k, device=x.device, dtype=x.dtype) + 0.5) / k
    pos = (q.unsqueeze(0) * cnt.unsqueeze(1).to(x.dtype)).floor().long().clamp(max=n - 1)
    pos = torch.minimum(pos, (cnt - 1).unsqueeze(1))
    c = srt.gather(1, pos)
    return torch.where(torch.isfinite(c), c, torch.zeros_like(c)).unsqueeze(-1)


def _farthest_point_init(x: Tensor, mask: Tensor, k: int) -> Tensor:
    """Deterministic farthest-point traversal, starting from the valid point nearest the masked mean."""
    b, n, d = x.shape
    bi = torch.arange(b, device=x.device)
    w = mask.to(x.dtype).unsqueeze(-1)
    xx = (x * x).sum(-1, keepdim=True)
    mean = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
    d0 = _sq_dists(x, mean, xx)[..., 0].masked_fill(~mask, math.inf)
    idx = d0.argmin(1)
    centres = [x[bi, idx]]
    mind = _sq_dists(x, centres[0].unsqueeze(1), xx)[..., 0]
    for _ in range(1, k):
        idx = mind.masked_fill(~mask, -1.0).argmax(1)
        c = x[bi, idx]
        centres.append(c)
        mind = torch.minimum(mind, _sq_dists(x, c.unsqueeze(1), xx)[..., 0])
    return torch.stack(centres, 1)


def _lloyd(x: Tensor, mask: Tensor, c: Tensor, max_iter: int) -> tuple[Tensor, Tensor, Tensor]:
    """Batched Lloyd iterations from centres ``c``; returns labels, centres and per-image inertia."""
    b, n, d = x.shape
    k = c.shape[1]
    w = mask.to(x.dtype)
    xx = (x * x).sum(-1, keepdim=True) if d > 1 else None
    labels = torch.full((b, n), -1, dtype=torch.long, device=x.device)
    for _ in range(max_iter):
        new = _sq_dists(x, c, xx).argmin(-1).masked_fill(~mask, -1)
        if torch.equal(new, labels):
            break
        labels = new
        onehot = F.one_hot(labels.clamp_min(0), k).to(x.dtype) * w.unsqueeze(-1)
        cnt = onehot.sum(1)  # (B, k)
        sums = torch.bmm(onehot.transpose(1, 2), x)
        c = torch.where(cnt.unsqueeze(-1) > 0, sums / cnt.clamp_min(1.0).unsqueeze(-1), c)
    labels = _sq_dists(x, c, xx).argmin(-1).masked_fill(~mask, -1)
    inertia = (_sq_dists(x, c, xx).gather(2, labels.clamp_min(0).unsqueeze(-1))[..., 0] * w).sum(1)
    return labels, c, inertia


def batched_kmeans(
    x: Tensor, mask: Tensor | None, k: int, *, max_iter: int = 100, init: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Lloyd k-means run independently on every image of a batch, in lock-step.

    ``x`` is ``(B, N, D)``, ``mask`` ``(B, N)`` marks valid points (padding is ignored and labelled -1).
    ``init``: ``"quantile"`` (1-D only), ``"farthest"``, or ``"auto"``: for ``D == 1`` both are run and
    each image keeps the solution with the lower inertia (a tiny salient cluster defeats the quantile
    init alone), for ``D > 1`` farthest-point. Empty clusters keep their previous centre.
    Returns ``labels (B, N)`` and ``centres (B, k, D)``.
    """
    if x.dim() != 3:
        raise ValueError(f"x must be (B, N, D), got shape {tuple(x.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    b, n, d = x.shape
    if mask is None:
        mask = torch.ones(b, n, dtype=torch.bool, device=x.device)
    if b == 0 or n == 0:
        return torch.full((b, n), -1, dtype=torch.long, device=x.device), x.new_zeros(b, k, d)
    if init == "auto":
        inits = ["quantile", "farthest"] if d == 1 else ["farthest"]
    elif init in ("quantile", "farthest"):
        inits = [init]
    else:
        raise ValueError(f"unknown k-means init {init!r} (use 'quantile', 'farthest' or 'auto')")
    best: tuple[Tensor, Tensor, Tensor] | None = None
    for name in inits:
        if name == "quantile":
            if d != 1:
                raise ValueError(f"init='quantile' needs 1-D data, got D={d}")
            c0 = _quantile_init(x, mask, k)
        else:
            c0 = _farthest_point_init(x, mask, k)
        lab, c, inertia = _lloyd(x, mask, c0, max_iter)
        if best is None:
            best = (lab, c, inertia)
        else:
            better = inertia < best[2] * (1 - 1e-9)  # strictly better, so ties keep the first init
            best = (
                torch.where(better.unsqueeze(1), lab, best[0]),
                torch.where(better.view(b, 1, 1), c, best[1]),
                torch.where(better, inertia, best[2]),
            )
    assert best is not None
    return best[0], best[1]

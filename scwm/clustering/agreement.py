"""kNN cross agreement between global and part features (Eq. 7, from PPLR)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .jaccard import as_feature_tensor, topk_neighbours

__all__ = ["cross_agreement"]


@torch.no_grad()
def cross_agreement(
    global_feats: np.ndarray | torch.Tensor,
    part_feats: np.ndarray | torch.Tensor,
    k: int = 20,
    batch: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 7: ``alpha_parts[i, p] = |kNN(f^g_i) ∩ kNN(f^p_i)| / |kNN(f^g_i) ∪ kNN(f^p_i)|``.

    kNN sets hold the ``k`` nearest other samples (the sample itself excluded) by cosine similarity of
    L2-normalised features; with equal set sizes the IoU is ``m / (2k - m)``. ``global_feats`` is
    ``(N, D)``, ``part_feats`` ``(N, P, D)`` (PPLR stores parts as ``(N, D, P)``). Returns float32
    ``alpha_parts (N, P)`` and ``alpha_global = alpha_parts.mean(1)`` ``(N,)`` on the compute device
    (default: the tensor's own device, CPU for numpy). Never holds more than ``batch x N`` scores.
    """
    g = as_feature_tensor(global_feats, "global_feats", 2, device)
    dev = g.device
    p = as_feature_tensor(part_feats, "part_feats", 3, dev)
    n, d = g.shape
    if p.shape[0] != n or p.shape[2] != d:
        raise ValueError(
            f"part_feats shape {tuple(p.shape)} does not match global_feats {tuple(g.shape)}: "
            "expected (N, P, D)"
        )
    num_parts = p.shape[1]
    if num_parts < 1:
        raise ValueError("part_feats has no parts (P=0)")
    k = int(k)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k={k} must be in [1, N-1] = [1, {n - 1}] for N={n} samples")

    knn_g = topk_neighbours(F.normalize(g, dim=1), k, self_first=False, batch=batch)  # (N, k)
    alpha = torch.empty((n, num_parts), dtype=torch.float32, device=dev)
    for j in range(num_parts):  # loop over parts only; each part is a batched N x N search
        knn_p = topk_neighbours(F.normalize(p[:, j], dim=1), k, self_first=False, batch=batch)
        # Indices within a row are distinct, so the pairwise-equality count is |intersection|.
        m = (knn_g.unsqueeze(2) == knn_p.unsqueeze(1)).sum(dim=(1, 2)).float()
        alpha[:, j] = m / (2 * k - m)
    return alpha, alpha.mean(dim=1)

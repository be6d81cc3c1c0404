"""Momentum smoothing of the pseudo parsing masks (Sec. 3.2, Eq. 3).

``M~ <- gamma * M~ + (1 - gamma) * M`` with ``M`` the one-hot pseudo mask of the current clustering.
The momentum is ``gamma`` for epochs ``0 .. until-1`` (0-based) and exactly 0 from epoch ``until`` on
("gamma = 0.2, decreases to 0 after 20 epochs"), after which the smoothed mask equals the new mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["labels_to_onehot", "mask_momentum", "smooth_masks"]


def labels_to_onehot(labels: Tensor, num_parts: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Label maps ``(B, H, W)`` with values in ``[0, num_parts)`` -> one-hot masks ``(B, num_parts, H, W)``."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if labels.is_floating_point():
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_parts):
        raise ValueError(
            f"labels must lie in [0, {num_parts}), got range [{int(labels.min())}, {int(labels.max())}]"
        )
    return F.one_hot(labels.long(), num_parts).permute(0, 3, 1, 2).to(dtype)


def smooth_masks(previous: Tensor | None, current: Tensor, gamma: float, num_parts: int | None = None) -> Tensor:
    """Eq. 3: ``gamma * previous + (1 - gamma) * current`` as soft masks ``(B, num_parts, H, W)``.

    ``current`` is a label map ``(B, H, W)`` (integer; ``num_parts`` given or taken from ``previous``)
    or a soft/one-hot mask ``(B, num_parts, H, W)``. ``previous=None`` (first epoch) returns ``current``
    as a float mask.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    if current.dim() == 3:
        p = num_parts if num_parts is not None else (previous.shape[1] if previous is not None else None)
        if p is None:
            raise ValueError("num_parts is needed to one-hot encode label maps when previous is None")
        dtype = previous.dtype if previous is not None and previous.is_floating_point() else torch.float32
        cur = labels_to_onehot(current, p, dtype)
    elif current.dim() == 4:
        cur = current if current.is_floating_point() else current.float()
        if num_parts is not None and cur.shape[1] != num_parts:
            raise ValueError(f"current has {cur.shape[1]} part channels, expected num_parts={num_parts}")
    else:
        raise ValueError(f"current must be (B, H, W) labels or (B, P, H, W) masks, got shape {tuple(current.shape)}")
    if previous is None:
        return cur.clone()
    if previous.shape != cur.shape:
        raise ValueError(f"previous mask shape {tuple(previous.shape)} != current mask shape {tuple(cur.shape)}")
    return gamma * previous.to(cur.dtype) + (1.0 - gamma) * cur


def mask_momentum(epoch: int, gamma: float = 0.2, until: int = 20) -> float:
    """Momentum for Eq. 3 at 0-based ``epoch``: ``gamma`` if ``epoch < until`` else 0."""
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    return float(gamma) if epoch < until else 0.0

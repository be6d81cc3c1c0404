"""Oracle pseudo part masks from ground-truth parsing (synthetic world only).

Not part of the paper's method: an upper bound for Table 2. It answers "how much could the
parsing branch gain if spatial cascaded clustering were perfect at this feature resolution?", which
tells a weak part source apart from a parsing branch that cannot help at all.

The ground-truth labels are ``0`` background, ``1`` head, ``2`` upper body, ``3`` lower body, ``4``
shoes, ``5`` accessory (the synthetic generator's label set). They are grouped into ``num_parts - 1``
foreground parts ordered top to bottom (like SCC's output) plus background ``num_parts - 1``, then
pooled to the feature grid by majority vote over each cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["GT_PART_GROUPS", "NUM_GT_LABELS", "oracle_part_labels"]

NUM_GT_LABELS = 6
"""Labels of the synthetic ground truth: background, head, upper body, lower body, shoes, accessory."""

GT_PART_GROUPS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((1, 2, 3, 4, 5),),
    2: ((1, 2, 5), (3, 4)),
    3: ((1, 2, 5), (3,), (4,)),
    4: ((1,), (2, 5), (3,), (4,)),
    5: ((1,), (2,), (5,), (3,), (4,)),
}
"""Ground-truth labels of each foreground part, for ``num_parts - 1`` foreground parts (top to bottom;
the accessory joins the upper body until it gets a part of its own). With more than five foreground
parts the extra parts stay empty."""


def _label_map(num_parts: int, device: torch.device) -> Tensor:
    """Lookup table: ground-truth label -> oracle part index (background -> ``num_parts - 1``)."""
    if num_parts < 2:
        raise ValueError(f"num_parts must be >= 2 (background + at least one part), got {num_parts}")
    groups = GT_PART_GROUPS[min(num_parts - 1, max(GT_PART_GROUPS))]
    lut = torch.full((NUM_GT_LABELS,), num_parts - 1, dtype=torch.long, device=device)
    for part, labels in enumerate(groups):
        lut[list(labels)] = part
    return lut


def oracle_part_labels(gt_masks: Tensor, num_parts: int, size: tuple[int, int]) -> Tensor:
    """Oracle pseudo part labels ``(B, h, w)`` at feature resolution ``size = (h, w)``.

    ``gt_masks`` is ``(B, H, W)`` with the synthetic labels 0..5. Each feature cell takes the oracle part
    covering most of its pixels (area-weighted for non-integer ratios; ties go to the lower index, so a
    cell half body, half background counts as body).
    """
    if gt_masks.dim() != 3:
        raise ValueError(f"gt_masks must be (B, H, W), got shape {tuple(gt_masks.shape)}")
    gt = gt_masks.long()
    if gt.numel() and (int(gt.min()) < 0 or int(gt.max()) >= NUM_GT_LABELS):
        raise ValueError(f"ground-truth labels must lie in [0, {NUM_GT_LABELS}), "
                         f"got range [{int(gt.min())}, {int(gt.max())}]")
    parts = _label_map(num_parts, gt.device)[gt]
    if parts.shape[0] == 0:
        return parts.new_zeros((0, *size))
    onehot = F.one_hot(parts, num_parts).permute(0, 3, 1, 2).float()
    votes = F.adaptive_avg_pool2d(onehot, size) if parts.shape[1:] != size else onehot
    return votes.argmax(1)

"""Parsing quality against ground-truth part masks: foreground IoU and part mIoU after one Hungarian
assignment over the whole dataset.

Decisions:

* **Resolution.** Predictions (feature resolution, e.g. 24x8 / 16x8) are upsampled to the ground-truth
  resolution (e.g. 128x64) with nearest-neighbour interpolation (``F.interpolate(mode="nearest")``),
  which is how a pseudo mask at feature resolution covers the image. Scores are pixel counts at GT
  resolution.
* **Foreground IoU.** pred fg = ``pred != pred_background`` (every pixel when ``pred_background`` is
  ``None``, e.g. PCB stripes), gt fg = ``gt != gt_background``.
* **Part mIoU.** A confusion matrix ``C[p, g]`` is accumulated over the dataset. ``IoU[p, g] =
  C[p, g] / (|p| + |g| - C[p, g])`` over all pixels, for predicted foreground parts ``p`` and ground-
  truth foreground labels ``g``. One assignment (``scipy.optimize.linear_sum_assignment``, maximising
  the IoU sum) is made for the whole dataset, so a part index that means "head" in one image and "legs"
  in another is penalised. The mean is over the GT foreground labels that occur in the data; GT parts
  left unmatched (more GT parts than predicted parts) count as IoU 0, unmatched predicted parts are
  ignored. GT labels that never occur are excluded from the mean and the assignment.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from scwm.parsing.oracle import oracle_part_labels

__all__ = [
    "ParsingConfusion", "binary_auc", "horizontal_stripes", "norm_cue_cells", "part_map_similarity", "parsing_scores",
]


class ParsingConfusion:
    """Accumulates a ``(num_pred_parts, num_gt_labels)`` pixel confusion matrix; see module docstring."""

    def __init__(
        self, num_pred_parts: int, num_gt_labels: int, pred_background: int | None, gt_background: int = 0
    ) -> None:
        if num_pred_parts < 1 or num_gt_labels < 1:
            raise ValueError(f"need >= 1 predicted parts and GT labels, got {num_pred_parts}, {num_gt_labels}")
        if pred_background is not None and not 0 <= pred_background < num_pred_parts:
            raise ValueError(f"pred_background={pred_background} not in [0, {num_pred_parts})")
        if not 0 <= gt_background < num_gt_labels:
            raise ValueError(f"gt_background={gt_background} not in [0, {num_gt_labels})")
        self.num_pred_parts = num_pred_parts
        self.num_gt_labels = num_gt_labels
        self.pred_background = pred_background
        self.gt_background = gt_background
        self.confusion = np.zeros((num_pred_parts, num_gt_labels), dtype=np.int64)

    def update(self, pred_labels: Tensor, gt_labels: Tensor) -> None:
        """Add a batch: ``pred_labels (B, h, w)`` (upsampled nearest to GT size) and ``gt_labels (B, H, W)``."""
        pred_labels = torch.as_tensor(pred_labels)
        gt_labels = torch.as_tensor(gt_labels)
        if pred_labels.dim() != 3 or gt_labels.dim() != 3 or pred_labels.shape[0] != gt_labels.shape[0]:
            raise ValueError(
                f"expected (B, h, w) predictions and (B, H, W) GT, got {tuple(pred_labels.shape)} "
                f"and {tuple(gt_labels.shape)}"
            )
        gt = gt_labels.long()
        pred = pred_labels.long().to(gt.device)
        if pred.shape[1:] != gt.shape[1:]:
            pred = F.interpolate(pred.unsqueeze(1).float(), size=gt.shape[1:], mode="nearest").squeeze(1).long()
        if pred.numel() == 0:
            return
        for name, t, hi in (("pred_labels", pred, self.num_pred_parts), ("gt_labels", gt, self.num_gt_labels)):
            lo_v, hi_v = int(t.min()), int(t.max())
            if lo_v < 0 or hi_v >= hi:
                raise ValueError(f"{name} must lie in [0, {hi}), got range [{lo_v}, {hi_v}]")
        flat = (pred * self.num_gt_labels + gt).flatten()
        cm = torch.bincount(flat, minlength=self.num_pred_parts * self.num_gt_labels)
        self.confusion += cm.view(self.num_pred_parts, self.num_gt_labels).cpu().numpy()

    def reset(self) -> None:
        """Zero the accumulated counts."""
        self.confusion[:] = 0

    def _pred_fg(self) -> np.ndarray:
        fg = np.ones(self.num_pred_parts, dtype=bool)
        if self.pred_background is not None:
            fg[self.pred_background] = False
        return fg

    def scores(self) -> dict:
        """``fg_iou``, ``part_miou``, ``part_iou`` {gt label: IoU}, ``assignment`` {pred part: gt label},
        ``iou_matrix`` (pred fg parts x gt fg labels) and ``confusion``."""
        cm = self.confusion.astype(np.float64)
        pred_fg = self._pred_fg()
        gt_fg = np.ones(self.num_gt_labels, dtype=bool)
        gt_fg[self.gt_background] = False
        inter = cm[np.ix_(pred_fg, gt_fg)].sum()
        union = cm[pred_fg].sum() + cm[:, gt_fg].sum() - inter
        fg_iou = float(inter / union) if union > 0 else float("nan")

        pred_ids = np.flatnonzero(pred_fg)
        gt_ids = [g for g in np.flatnonzero(gt_fg) if cm[:, g].sum() > 0]
        sub = cm[np.ix_(pred_ids, gt_ids)]
        denom = cm[pred_ids].sum(1, keepdims=True) + cm[:, gt_ids].sum(0, keepdims=True) - sub
        iou = np.divide(sub, denom, out=np.zeros_like(sub), where=denom > 0)
        part_iou = {int(g): 0.0 for g in gt_ids}
        assignment: dict[int, int] = {}
        if iou.size:
            r, c = linear_sum_assignment(iou, maximize=True)
            for ri, ci in zip(r, c, strict=True):
                assignment[int(pred_ids[ri])] = int(gt_ids[ci])
                part_iou[int(gt_ids[ci])] = float(iou[ri, ci])
        part_miou = float(np.mean(list(part_iou.values()))) if part_iou else float("nan")
        return {
            "fg_iou": fg_iou,
            "part_miou": part_miou,
            "part_iou": part_iou,
            "assignment": assignment,
            "iou_matrix": iou,
            "confusion": self.confusion.copy(),
        }


def parsing_scores(
    pred_labels: Tensor, gt_labels: Tensor, num_pred_parts: int, num_gt_labels: int,
    pred_background: int | None, gt_background: int = 0,
) -> dict:
    """One-shot :class:`ParsingConfusion` over a single batch; returns ``scores()``."""
    acc = ParsingConfusion(num_pred_parts, num_gt_labels, pred_background, gt_background)
    acc.update(pred_labels, gt_labels)
    return acc.scores()


def horizontal_stripes(
    batch: int, height: int, width: int, num_parts: int, device: torch.device | str | None = None
) -> Tensor:
    """PCB-style label maps ``(B, H, W)``: ``num_parts`` equal horizontal stripes, top = 0, all foreground.

    Row ``r`` gets ``floor(r * num_parts / H)``; score them with ``pred_background=None``.
    """
    if num_parts < 1 or height < 0 or width < 0 or batch < 0:
        raise ValueError(f"bad stripe spec B={batch} H={height} W={width} num_parts={num_parts}")
    rows = torch.arange(height, device=device) * num_parts // max(height, 1)
    return rows.view(1, height, 1).expand(batch, height, width).clone()


def binary_auc(scores: Tensor, positive: Tensor) -> float:
    """Area under the ROC curve of ``scores`` for the boolean labels ``positive`` (Mann-Whitney U, ties
    counted one half); NaN when one class is empty.

    Used as the foreground-cue diagnostic of step 1 of cascaded clustering: scores = per-cell feature
    norms, positive = cells whose pixels are mostly body. 0.5 = no signal, < 0.5 = background responds more.
    """
    x = torch.as_tensor(scores).flatten().double()
    y = torch.as_tensor(positive).flatten().bool()
    if x.shape != y.shape:
        raise ValueError(f"scores and labels differ in size: {x.numel()} vs {y.numel()}")
    n_pos = int(y.sum())
    n_neg = y.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = torch.unique(x, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    avg_rank = ends - (counts.double() - 1) / 2  # 1-based average rank of each distinct value
    rank_sum = avg_rank[inverse][y].sum().item()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def norm_cue_cells(feature_maps: Tensor, gt_masks: Tensor) -> tuple[Tensor, Tensor]:
    """Per feature cell: the feature norm divided by its image's maximum, and whether most of the cell's
    ground-truth pixels are body (label != 0). Both ``(B, h, w)``, the feature grid; feed them to
    :func:`binary_auc` (pooled) or :func:`within_position_auc` (per grid position) for the
    foreground-cue diagnostic of cascaded clustering's step 1."""
    fmap = feature_maps.float()
    norms = fmap.norm(dim=1)
    norms = norms / norms.amax((1, 2), keepdim=True).clamp_min(1e-12)
    body = oracle_part_labels(gt_masks.to(fmap.device), 2, tuple(fmap.shape[2:])) == 0
    return norms, body


def within_position_auc(norms: Tensor, positive: Tensor, min_share: float = 0.1) -> tuple[float, int]:
    """Content part of the foreground cue: :func:`binary_auc` of ``norms`` for ``positive`` computed at
    each feature-grid position separately, averaged over the positions where the positive share lies in
    ``[min_share, 1 - min_share]``; returns ``(mean AUC, number of positions)`` (NaN, 0 when none).

    ``norms`` and ``positive`` are ``(N, h, w)`` (N images). The pooled AUC mixes two signals: whether
    the norm is higher on the body than on the background *at the same place*, and whether the norm has
    a fixed spatial profile that happens to overlap where bodies usually are (image centre). This one
    keeps only the first. One AUC per position: a loop over at most ``h*w`` positions, not over images.
    """
    x = torch.as_tensor(norms)
    y = torch.as_tensor(positive).bool()
    if x.dim() != 3 or x.shape != y.shape:
        raise ValueError(f"norms and positive must both be (N, h, w), got {tuple(x.shape)} and {tuple(y.shape)}")
    if not 0.0 <= min_share < 0.5:
        raise ValueError(f"min_share must be in [0, 0.5), got {min_share}")
    share = y.float().mean(0)
    keep = ((share >= min_share) & (share <= 1 - min_share) & (share > 0) & (share < 1)).nonzero().tolist()
    aucs = [binary_auc(x[:, i, j], y[:, i, j]) for i, j in keep]
    return (float(sum(aucs) / len(aucs)), len(aucs)) if aucs else (float("nan"), 0)


def part_map_similarity(part_probs: Tensor, include_background: bool = False) -> Tensor:
    """Mean pairwise cosine similarity between the part maps of each image, ``(B,)``.

    ``part_probs (B, l, h, w)`` are the part head's soft maps (background last). For every pair
    ``i < j`` of maps (foreground maps only unless ``include_background``), the maps are flattened
    over ``(h, w)`` and compared by cosine; the result averages the pairs. 1 = all parts cover the same
    cells in the same proportions (the collapse that Eq. 5's diversity loss prevents, paper Fig. 4),
    0 = disjoint parts. Unlike Eq. 5 it does not depend on how much mass each part has. An all-zero map
    counts as similarity 0 with every other map. NaN for fewer than two maps.
    """
    if part_probs.dim() != 4:
        raise ValueError(f"part_probs must be (B, l, h, w), got {tuple(part_probs.shape)}")
    maps = part_probs if include_background else part_probs[:, :-1]
    b, k = maps.shape[:2]
    if k < 2:
        return torch.full((b,), float("nan"), device=part_probs.device)
    unit = F.normalize(maps.float().flatten(2), dim=2)  # (B, k, hw)
    gram = unit @ unit.transpose(1, 2)  # (B, k, k)
    off_diag = gram.sum((1, 2)) - gram.diagonal(dim1=1, dim2=2).sum(1)
    return off_diag / (k * (k - 1))

"""Self-learned human-parsing losses (paper Sec. 3.2, Eq. 4-5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _resize_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize ``(B, K, H, W)`` maps: area averaging when shrinking in both axes, bilinear otherwise."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    if maps.shape[-2] >= size[0] and maps.shape[-1] >= size[1]:
        return F.interpolate(maps, size=size, mode="area")
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def parsing_loss(
    part_probs: Tensor,
    target_masks: Tensor,
    eps: float = 1e-6,
    valid_mask: Tensor | None = None,
) -> Tensor:
    """Pixel-wise soft cross entropy, Eq. 4: ``-sum_c M~_c log P_c``, averaged over pixels and batch.

    Args:
        part_probs: ``(B, l, h, w)`` softmax outputs of the part head (background last).
        target_masks: ``(B, l, H, W)`` soft pseudo masks (Eq. 3) or an integer label map ``(B, H, W)``
            with values in ``[0, l)``. Targets at another resolution are resized to ``(h, w)`` (area when
            shrinking, bilinear otherwise) and re-normalised to sum to 1 per pixel.
        eps: added inside the log (keeps the gradient alive for tiny probabilities).
        valid_mask: optional ``(B, H, W)`` / ``(B, 1, H, W)`` per-pixel validity (or weight) at either
            resolution; the loss is then the mean over valid pixels of the whole batch.
    """
    if part_probs.dim() != 4:
        raise ValueError(f"part_probs must be (B, l, h, w), got {tuple(part_probs.shape)}")
    b, num_ch, h, w = part_probs.shape
    if target_masks.shape[0] != b:
        raise ValueError(f"target_masks batch {target_masks.shape[0]} != part_probs batch {b}")
    if target_masks.dim() == 3 and not target_masks.is_floating_point():
        labels = target_masks.long().unsqueeze(1)  # scatter, not F.one_hot (no host-side label check)
        target_masks = torch.zeros(
            (b, num_ch, *labels.shape[-2:]), dtype=part_probs.dtype, device=part_probs.device
        ).scatter_(1, labels, 1.0)
    if target_masks.dim() != 4 or target_masks.shape[:2] != (b, num_ch):
        raise ValueError(
            f"target_masks must be (B={b}, l={num_ch}, H, W) or an integer (B, H, W) map, "
            f"got {tuple(target_masks.shape)}"
        )
    target = target_masks.detach().to(part_probs.dtype)
    if tuple(target.shape[-2:]) != (h, w):
        target = _resize_maps(target, (h, w))
        target = target / target.sum(dim=1, keepdim=True).clamp_min(1e-12)
    ce = -(target * torch.log(part_probs + eps)).sum(dim=1)  # (B, h, w)
    if valid_mask is None:
        return ce.mean()
    v = valid_mask.detach().to(part_probs.dtype)
    if v.dim() == 3:
        v = v.unsqueeze(1)
    if v.dim() != 4 or v.shape[0] != b or v.shape[1] != 1:
        raise ValueError(f"valid_mask must be (B, H, W) or (B, 1, H, W), got {tuple(valid_mask.shape)}")
    v = _resize_maps(v, (h, w)).squeeze(1)
    return (v * ce).sum() / v.sum().clamp_min(1e-12)


def diversity_loss(part_probs: Tensor, include_background: bool = True, normalize: bool = True) -> Tensor:
    """Diversity of the predicted part maps, Eq. 5: ``2/(l(l-1)) sum_{i<j} sum_{(x,y)} P_i P_j``.

    Uses ``sum_{i<j} P_i P_j = ((sum_i P_i)^2 - sum_i P_i^2) / 2`` per pixel. ``include_background``
    keeps the background channel (last) among the l maps, as Eq. 5 does (j runs to l).
    ``normalize=True`` (default) averages over pixels instead of summing: the literal sum grows with the
    map size (x192 at 24x8), which would dwarf the per-pixel-mean parsing loss of Eq. 4 and make the
    balance of Eq. 6 depend on the input resolution; ``normalize=False`` is the literal sum
    (= ``h * w`` times the default). Averaged over the batch. Returns 0 for fewer than two maps.
    """
    if part_probs.dim() != 4:
        raise ValueError(f"part_probs must be (B, l, h, w), got {tuple(part_probs.shape)}")
    probs = part_probs if include_background else part_probs[:, :-1]
    num_maps = probs.shape[1]
    if num_maps < 2:
        return part_probs.sum() * 0.0
    pair_sum = 0.5 * (probs.sum(dim=1).square() - probs.square().sum(dim=1))  # (B, h, w)
    per_image = pair_sum.mean(dim=(1, 2)) if normalize else pair_sum.sum(dim=(1, 2))
    return per_image.mean() * (2.0 / (num_maps * (num_maps - 1)))

"""Losses of PLIP-style source pretraining: attribute prediction and colourisation (pure tensor functions).

PLIP ("PLIP: language-image pre-training for person representation learning", Sec. 3) trains its image encoder
with attribute prediction from the image and text-guided colourisation of a greyscale image; our analogues take
the attribute classes of the synthetic identity spec instead of text. Colours are CIE Lab (D65 white, sRGB
primaries): the network sees the L channel of a crop (as a grey sRGB image with a* = b* = 0) and predicts a*b*.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

AB_SCALE = 110.0
"""a*b* are divided by this to land in about [-1, 1] (sRGB's a*b* lie within +-110)."""
_RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB transfer function (IEC 61966-2-1), values in [0, 1]."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(lin: torch.Tensor) -> torch.Tensor:
    """sRGB transfer function (IEC 61966-2-1), values in [0, 1]."""
    lin = lin.clamp(0.0, 1.0)
    return torch.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin.clamp(min=1e-12) ** (1 / 2.4) - 0.055)


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIE L*a*b* (D65) of sRGB images (B, 3, H, W) in [0, 1]; L in [0, 100]."""
    lin = srgb_to_linear(rgb.float().clamp(0.0, 1.0))
    xyz = torch.einsum("ij,bjhw->bihw", _RGB_TO_XYZ.to(lin.device), lin)
    t = xyz / _WHITE_D65.to(lin.device).view(1, 3, 1, 1)
    f = torch.where(t > _EPS, t.clamp(min=1e-12) ** (1 / 3), (_KAPPA * t + 16) / 116)
    return torch.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], dim=1)


def greyscale_like_lab(rgb: torch.Tensor) -> torch.Tensor:
    """The grey sRGB image (B, 3, H, W) with the same L* as ``rgb`` and a* = b* = 0 (what the colouriser sees).

    With a* = b* = 0, X/Xn = Y/Yn = Z/Zn, so linear R = G = B = Y (the relative luminance)."""
    y = torch.einsum("j,bjhw->bhw", _RGB_TO_XYZ[1].to(rgb.device), srgb_to_linear(rgb.float().clamp(0.0, 1.0)))
    return linear_to_srgb(y)[:, None].expand(-1, 3, -1, -1)


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Undo ``(x - mean) / std`` of normalised images (B, 3, H, W); pixels clamped to [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * s + m).clamp(0.0, 1.0)


def normalize(rgb: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(rgb - mean) / std`` of images (B, 3, H, W) in [0, 1]."""
    m = torch.as_tensor(mean, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - m) / s


def colorization_target(rgb: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The colouriser's target: a*b* / :data:`AB_SCALE` of ``rgb`` (B, 3, H, W) in [0, 1], averaged over the
    cells of a ``size`` grid (area pooling) -> (B, 2, *size)."""
    ab = srgb_to_lab(rgb)[:, 1:] / AB_SCALE
    return F.adaptive_avg_pool2d(ab, size)


def colorization_loss(pred_ab: torch.Tensor, target_ab: torch.Tensor) -> torch.Tensor:
    """Mean absolute error (L1) between predicted and target a*b* maps (B, 2, h, w)."""
    if pred_ab.shape != target_ab.shape:
        raise ValueError(f"predicted a*b* {tuple(pred_ab.shape)} and target {tuple(target_ab.shape)} differ in shape")
    return (pred_ab.float() - target_ab.float()).abs().mean()


def attribute_loss(logits: Sequence[torch.Tensor], targets: torch.Tensor,
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean over attribute groups of the cross-entropy of ``logits[g]`` (B, K_g) against ``targets[:, g]`` (B, G);
    target -1 = unknown (ignored); a group with no known target in the batch adds 0 and is not counted."""
    if targets.dim() != 2 or targets.shape[1] != len(logits):
        raise ValueError(f"targets must be (B, {len(logits)}), got {tuple(targets.shape)}")
    terms = []
    for g, lg in enumerate(logits):
        known = targets[:, g] >= 0
        if known.any():
            terms.append(F.cross_entropy(lg.float()[known], targets[known, g], label_smoothing=label_smoothing))
    if not terms:
        return logits[0].sum() * 0.0
    return torch.stack(terms).mean()


def attribute_accuracy(logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Per-group accuracy (G,) over known targets (-1 ignored); NaN for a group without any known target."""
    out = []
    for g, lg in enumerate(logits):
        known = targets[:, g] >= 0
        hit = (lg.argmax(1) == targets[:, g])[known].float()
        out.append(hit.mean() if known.any() else torch.tensor(float("nan"), device=lg.device))
    return torch.stack(out)

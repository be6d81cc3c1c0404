"""Image transforms that keep part masks aligned with their image.

- :func:`preprocess` is the evaluation/serving preprocessing (PIL bilinear resize -> /255 -> normalize)
  shared with the ONNX Runtime side, so both paths see identical inputs.
- :class:`TrainTransform` is PPLR's training augmentation (resize, flip, pad + random crop, normalize,
  random erasing), applied identically to an optional mask: an integer label map (nearest) or soft
  masks ``(K, h, w)`` (bilinear). Padded and erased pixels become background in the mask.
- Both transforms share the call protocol ``t(image, mask=None) -> (Tensor[3,H,W], mask_out | None)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DEFAULT_SIZE",
    "PAPER_SIZE",
    "preprocess",
    "resize_label_map",
    "resize_soft_masks",
    "AugParams",
    "TrainTransform",
    "EvalTransform",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = (128, 64)  # (H, W) of the synthetic world
PAPER_SIZE = (384, 128)  # (H, W) used by the paper on real data

MaskLike = Any  # np.ndarray | torch.Tensor | PIL.Image.Image | None


def _check_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")


def _check_stats(mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.asarray(std, dtype=np.float32).reshape(-1)
    if m.shape != (3,) or s.shape != (3,):
        raise ValueError(f"mean and std must have 3 values, got mean={mean!r}, std={std!r}")
    if np.any(s <= 0):
        raise ValueError(f"std values must be positive, got {std!r}")
    return m, s


def preprocess(
    image: Image.Image,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> np.ndarray:
    """Eval/serving preprocessing: PIL ``resize((width, height), BILINEAR)`` -> /255 -> normalize.

    Returns a float32 ``(3, height, width)`` array. Non-RGB images are converted to RGB first.
    """
    _check_size(height, width)
    m, s = _check_stats(mean, std)
    if not isinstance(image, Image.Image):
        raise TypeError(f"preprocess expects a PIL.Image.Image, got {type(image).__name__}")
    if image.mode != "RGB":
        image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(image, dtype=np.float32) / np.float32(255.0)
    arr = (arr - m) / s
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def _as_tensor(mask: MaskLike) -> torch.Tensor:
    if isinstance(mask, Image.Image):
        return torch.from_numpy(np.array(mask))
    if isinstance(mask, np.ndarray):
        if not mask.flags.writeable:
            mask = mask.copy()
        return torch.from_numpy(np.ascontiguousarray(mask))
    if isinstance(mask, torch.Tensor):
        return mask
    raise TypeError(f"mask must be a numpy array, torch tensor or PIL image, got {type(mask).__name__}")


def _is_label_map(m: torch.Tensor) -> bool:
    if m.ndim == 2:
        if m.is_floating_point() or m.is_complex():
            raise ValueError(f"a 2-D mask is a label map and must have an integer dtype, got {m.dtype}")
        return True
    if m.ndim == 3:
        return False
    raise ValueError(f"mask must be a (H, W) label map or (K, h, w) soft masks, got shape {tuple(m.shape)}")


def resize_label_map(mask: MaskLike, height: int, width: int) -> torch.Tensor:
    """Resize an integer label map to ``(height, width)`` with pixel-centre nearest; returns a LongTensor."""
    m = _as_tensor(mask)
    if not _is_label_map(m):
        raise ValueError(f"expected a (H, W) label map, got shape {tuple(m.shape)}")
    m = m.long()
    if tuple(m.shape) == (height, width):
        return m.clone()
    out = F.interpolate(m[None, None].double(), size=(height, width), mode="nearest-exact")
    return out[0, 0].long()


def resize_soft_masks(masks: MaskLike, height: int, width: int) -> torch.Tensor:
    """Resize soft masks ``(K, h, w)`` to ``(K, height, width)`` (bilinear, antialiased when shrinking)."""
    m = _as_tensor(masks)
    if m.ndim != 3:
        raise ValueError(f"expected (K, h, w) soft masks, got shape {tuple(m.shape)}")
    m = m.float()
    if tuple(m.shape[-2:]) == (height, width):
        return m.clone()
    return F.interpolate(m[None], size=(height, width), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def _shift_fill(x: torch.Tensor, top: int, left: int, pad: int, fill: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x (..., H, W)`` by ``pad`` with ``fill`` and crop ``(H, W)`` at ``(top, left)``."""
    H, W = x.shape[-2:]
    sy, sx = top - pad, left - pad  # out[y, x] = x[y + sy, x + sx] where valid
    out = fill.to(x.dtype).expand_as(x).clone()
    y0, y1 = max(0, -sy), min(H, H - sy)
    x0, x1 = max(0, -sx), min(W, W - sx)
    if y1 > y0 and x1 > x0:
        out[..., y0:y1, x0:x1] = x[..., y0 + sy:y1 + sy, x0 + sx:x1 + sx]
    return out


@dataclass(frozen=True)
class AugParams:
    """Random parameters of one :class:`TrainTransform` call.

    ``top``/``left``: crop offset in the padded image (0..2*pad); ``erase``: ``(top, left, h, w)`` of the
    erased rectangle in the output, or None.
    """

    flip: bool
    top: int
    left: int
    erase: tuple[int, int, int, int] | None


class TrainTransform:
    """Training augmentation applied identically to an image and its (optional) mask.

    ``t(image, mask=None, generator=None) -> (Tensor[3, H, W], mask_out)`` where ``mask_out`` is a
    LongTensor ``(H, W)`` for a label map, a float ``(K, H, W)`` tensor for soft masks, or None.
    Randomness comes from ``generator``, else from a private generator seeded with ``seed``, else from
    the global torch RNG (the right choice inside DataLoader workers, which seed it per worker).
    """

    def __init__(
        self,
        height: int = DEFAULT_SIZE[0],
        width: int = DEFAULT_SIZE[1],
        flip_p: float = 0.5,
        pad: int = 10,
        erase_p: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        erase_area: tuple[float, float] = (0.02, 0.4),
        erase_aspect: float = 0.3,
        background_label: int = 0,
        background_channel: int = -1,
        seed: int | None = None,
    ) -> None:
        _check_size(height, width)
        for name, p in (("flip_p", flip_p), ("erase_p", erase_p)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if not 0 < erase_area[0] <= erase_area[1] < 1:
            raise ValueError(f"erase_area must satisfy 0 < lo <= hi < 1, got {erase_area}")
        if not 0 < erase_aspect <= 1:
            raise ValueError(f"erase_aspect must be in (0, 1], got {erase_aspect}")
        self.height, self.width = int(height), int(width)
        self.flip_p, self.pad, self.erase_p = float(flip_p), int(pad), float(erase_p)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        m, s = _check_stats(self.mean, self.std)
        self._pad_fill = torch.from_numpy(-m / s).view(3, 1, 1)  # black pixel after normalization
        self.erase_area, self.erase_aspect = (float(erase_area[0]), float(erase_area[1])), float(erase_aspect)
        self.background_label, self.background_channel = int(background_label), int(background_channel)
        self.generator = None if seed is None else torch.Generator().manual_seed(int(seed))

    def __repr__(self) -> str:
        return (f"TrainTransform(height={self.height}, width={self.width}, flip_p={self.flip_p}, "
                f"pad={self.pad}, erase_p={self.erase_p})")

    def sample_params(self, generator: torch.Generator | None = None) -> AugParams:
        """Draw the random parameters of one call (flip, crop offset, erased rectangle)."""
        g = generator if generator is not None else self.generator

        def rand() -> float:
            return float(torch.rand((), generator=g))

        def randint(lo: int, hi: int) -> int:  # inclusive
            return int(torch.randint(lo, hi + 1, (1,), generator=g))

        flip = rand() < self.flip_p
        top, left = randint(0, 2 * self.pad), randint(0, 2 * self.pad)
        erase = None
        if rand() < self.erase_p:  # Zhong et al., "Random Erasing Data Augmentation" (100 attempts)
            H, W = self.height, self.width
            lo, hi = self.erase_area
            for _ in range(100):
                area = (lo + (hi - lo) * rand()) * H * W
                aspect = self.erase_aspect + (1.0 / self.erase_aspect - self.erase_aspect) * rand()
                h = int(round(math.sqrt(area * aspect)))
                w = int(round(math.sqrt(area / aspect)))
                if 0 < h < H and 0 < w < W:
                    erase = (randint(0, H - h), randint(0, W - w), h, w)
                    break
        return AugParams(flip, top, left, erase)

    def _soft_background(self, k: int) -> torch.Tensor:
        ch = self.background_channel if self.background_channel >= 0 else k + self.background_channel
        if not 0 <= ch < k:
            raise ValueError(f"background_channel {self.background_channel} out of range for {k} channels")
        fill = torch.zeros(k, 1, 1)
        fill[ch] = 1.0
        return fill

    def apply(
        self, image: Image.Image, mask: MaskLike, params: AugParams
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply the transform with the given random ``params`` (deterministic)."""
        x = torch.from_numpy(preprocess(image, self.height, self.width, self.mean, self.std))
        m, fill = None, None
        if mask is not None:
            mt = _as_tensor(mask)
            if _is_label_map(mt):
                m = resize_label_map(mt, self.height, self.width)
                fill = torch.tensor(self.background_label, dtype=torch.long)
            else:
                m = resize_soft_masks(mt, self.height, self.width)
                fill = self._soft_background(m.shape[0])
        if params.flip:
            x = x.flip(-1)
            m = m.flip(-1) if m is not None else None
        if self.pad > 0 or params.top or params.left:
            x = _shift_fill(x, params.top, params.left, self.pad, self._pad_fill)
            if m is not None:
                m = _shift_fill(m, params.top, params.left, self.pad, fill)
        if params.erase is not None:
            t, l, h, w = params.erase
            x[:, t:t + h, l:l + w] = 0.0  # the mean colour after normalization
            if m is not None:
                m[..., t:t + h, l:l + w] = fill.to(m.dtype)
        return x, m

    def __call__(
        self, image: Image.Image, mask: MaskLike = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.apply(image, mask, self.sample_params(generator))


class EvalTransform:
    """Deterministic eval transform: :func:`preprocess` as a tensor; masks are resized to match.

    ``t(image, mask=None) -> (Tensor[3, H, W], mask_out | None)``, same protocol as :class:`TrainTransform`.
    """

    def __init__(
        self,
        height: int = DEFAULT_SIZE[0],
        width: int = DEFAULT_SIZE[1],
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        _check_size(height, width)
        _check_stats(mean, std)
        self.height, self.width = int(height), int(width)
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def __repr__(self) -> str:
        return f"EvalTransform(height={self.height}, width={self.width})"

    def __call__(self, image: Image.Image, mask: MaskLike = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = torch.from_numpy(preprocess(image, self.height, self.width, self.mean, self.std))
        if mask is None:
            return x, None
        mt = _as_tensor(mask)
        if _is_label_map(mt):
            return x, resize_label_map(mt, self.height, self.width)
        return x, resize_soft_masks(mt, self.height, self.width)

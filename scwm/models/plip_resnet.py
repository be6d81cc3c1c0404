"""PLIP's image trunk: CLIP's "ModifiedResNet"-50 without its pooling head, with a re-ID last stride.

PLIP (Zuo et al., pretrained on SYNTH-PEDES; the paper's backbone) encodes images with CLIP's modified
ResNet: a stem of three 3x3 convolutions followed by a 2x2 average pool, and Bottleneck blocks (expansion 4)
whose stride is an average pool after the 3x3 convolution (all convolutions have stride 1), with a
``downsample`` branch of average pool ``-1``, 1x1 convolution ``0`` and BatchNorm ``1``. Module names follow
that encoder, so its state dict (after the wrapper prefixes are removed) loads key for key; its own
projection head (``attnpool.*`` / ``avg_proj.*``) is not part of the trunk.

Three stems are known (:data:`STEMS`) and told apart by the shape of ``conv1`` (:func:`detect_stem`):
``clip`` (3 -> 32 -> 32 -> 64, average pool; PLIP's ``MResNet``), ``wide`` (3 -> 64 -> 64 -> 128, max pool;
PLIP's ``MResNetv2``) and ``7x7`` (one 7x7 convolution to 64 channels, max pool). Loading a state dict of
another stem rebuilds the stem first (:meth:`PLIPResNet.adapt_to_state`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

STEMS = ("clip", "wide", "7x7")
"""Known stems: convolution widths, pooling and the channels layer1 receives."""
_STEM_WIDTHS = {"clip": (32, 32, 64), "wide": (64, 64, 128), "7x7": (64,)}
BLOCKS = (3, 4, 6, 3)
WIDTH = 64


def detect_stem(state: Mapping[str, torch.Tensor], prefix: str = "") -> str | None:
    """The stem of a trunk state dict (keys under ``prefix``), from ``conv1``'s kernel size and width; None
    when ``conv1.weight`` is absent or of no known stem."""
    w = state.get(f"{prefix}conv1.weight")
    if not isinstance(w, torch.Tensor) or w.dim() != 4:
        return None
    if w.shape[-1] == 7:
        return "7x7"
    if w.shape[-1] == 3:
        return {32: "clip", 64: "wide"}.get(int(w.shape[0]))
    return None


def _init_convs(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _pool(stride: int) -> nn.Module:
    return nn.AvgPool2d(stride) if stride > 1 else nn.Identity()


class Bottleneck(nn.Module):
    """CLIP's anti-aliased Bottleneck: 1x1, 3x3 (stride 1), average pool of ``stride``, 1x1 (x4)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = _pool(stride)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride > 1 or inplanes != out:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", _pool(stride)),
                ("0", nn.Conv2d(inplanes, out, 1, bias=False)),
                ("1", nn.BatchNorm2d(out)),
            ]))

    def set_stride(self, stride: int) -> None:
        """Change the block's stride (its pools; no parameter changes)."""
        self.avgpool = _pool(stride)
        if self.downsample is not None:
            setattr(self.downsample, "-1", _pool(stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.avgpool(self.relu2(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu3(out + identity)


class PLIPResNet(nn.Module):
    """ModifiedResNet-50 trunk (stem ... layer4), no pooling head: images (B, 3, H, W) -> (B, 2048, H/16, W/16)
    with ``last_stride=1`` (H/32, W/32 with 2)."""

    def __init__(self, last_stride: int = 1, stem: str = "clip") -> None:
        super().__init__()
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        self.out_channels = WIDTH * 32
        self.stem = ""
        self._build_stem(stem)
        inplanes = _STEM_WIDTHS[stem][-1]
        layers = []
        for i, (blocks, stride) in enumerate(zip(BLOCKS, (1, 2, 2, 2), strict=True)):
            planes = WIDTH * 2**i
            seq = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            seq += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
            layers.append(nn.Sequential(*seq))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.last_stride = 2
        self.set_last_stride(last_stride)
        _init_convs(self)

    def _build_stem(self, stem: str) -> None:
        widths = _STEM_WIDTHS[stem]
        if stem == "7x7":
            self.conv1 = nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu1 = nn.ReLU(inplace=True)
        deep = len(widths) == 3
        self.conv2 = nn.Conv2d(widths[0], widths[1], 3, padding=1, bias=False) if deep else None
        self.bn2 = nn.BatchNorm2d(widths[1]) if deep else None
        self.relu2 = nn.ReLU(inplace=True) if deep else None
        self.conv3 = nn.Conv2d(widths[1], widths[2], 3, padding=1, bias=False) if deep else None
        self.bn3 = nn.BatchNorm2d(widths[2]) if deep else None
        self.relu3 = nn.ReLU(inplace=True) if deep else None
        self.stem_pool = nn.AvgPool2d(2) if stem == "clip" else nn.MaxPool2d(3, stride=2, padding=1)
        self.stem = stem

    def set_stem(self, stem: str) -> None:
        """Rebuild the stem as ``stem`` (fresh weights), and layer1's first block if its input width changes."""
        if stem not in STEMS:
            raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if stem == self.stem:
            return
        old_width = _STEM_WIDTHS[self.stem][-1]
        self._build_stem(stem)
        ref = self.layer1[0].conv1.weight
        if _STEM_WIDTHS[stem][-1] != old_width:
            self.layer1[0] = Bottleneck(_STEM_WIDTHS[stem][-1], WIDTH)
        for m in (self.conv1, self.bn1, self.conv2, self.bn2, self.conv3, self.bn3, self.layer1[0]):
            if m is not None:
                _init_convs(m)
                m.to(device=ref.device, dtype=ref.dtype)

    def set_last_stride(self, stride: int) -> None:
        """Stride of layer4 (1 for re-ID: no average pool in its first block, in either branch)."""
        if stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {stride}")
        self.layer4[0].set_stride(stride)
        self.last_stride = stride

    def adapt_to_state(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """Switch to the stem of ``state`` (keys under ``prefix``) when it is a known, different one."""
        stem = detect_stem(state, prefix)
        if stem is not None and stem != self.stem:
            log.info("PLIP trunk: the weights have the %r stem (not %r); rebuilding the stem", stem, self.stem)
            self.set_stem(stem)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # every load (load_state_dict of this trunk or of a network holding it) first matches the stem
        self.adapt_to_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        if self.conv2 is not None and self.bn2 is not None and self.relu2 is not None:
            x = self.relu2(self.bn2(self.conv2(x)))
        if self.conv3 is not None and self.bn3 is not None and self.relu3 is not None:
            x = self.relu3(self.bn3(self.conv3(x)))
        x = self.stem_pool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

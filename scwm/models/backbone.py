"""ResNet backbones with the re-ID modification (last stride 1), and weight loading.

``build_backbone`` returns a module mapping images (B, 3, H, W) to the last feature map F (Eq. 1),
of shape (B, C, H/16, W/16) with last stride 1 (C = 512 for ResNet-18/34, 2048 for ResNet-50/101).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from scwm.utils import load_torch_file

log = logging.getLogger(__name__)

_FACTORIES = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, 2048),
    "resnet101": (tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V2, 2048),
}
BACKBONES = tuple(_FACTORIES)


class WeightLoadError(RuntimeError):
    """Weights could not be obtained or did not match the architecture."""


class ResNetBackbone(nn.Module):
    """torchvision ResNet trunk (conv1 ... layer4) without pooling and classifier."""

    def __init__(self, resnet: tvm.ResNet, out_channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _set_last_stride(resnet: tvm.ResNet, stride: int) -> None:
    block = resnet.layer4[0]
    # torchvision puts the stride in conv2 for Bottleneck (ResNet v1.5) and conv1 for BasicBlock.
    conv = block.conv2 if isinstance(block, tvm.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def load_state_dict_report(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` non-strictly and raise/log a clear report of missing and unexpected keys."""
    own = module.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_bad:
        detail = ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape_bad[:5])
        raise WeightLoadError(f"weights from {source} do not fit this architecture ({detail})")
    matched = {k: v for k, v in state.items() if k in own}
    unexpected = [k for k in state if k not in own]
    if not matched:
        raise WeightLoadError(
            f"no parameter of the model was found in {source}; first keys there: {list(state)[:5]}"
        )
    result = module.load_state_dict(matched, strict=False)
    if result.missing_keys:
        log.warning("%s: %d missing keys (kept at initialisation), e.g. %s", source,
                    len(result.missing_keys), result.missing_keys[:5])
    if unexpected:
        log.info("%s: %d unexpected keys ignored, e.g. %s", source, len(unexpected), unexpected[:5])


def extract_backbone_state(obj: object, source: str) -> dict[str, torch.Tensor]:
    """Find backbone weights in a loaded checkpoint: a raw torchvision ResNet state dict, an scwm
    checkpoint (``{"model": ...}`` with ``backbone.`` keys) or a plain dict with ``backbone.`` keys."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightLoadError(f"{source} does not contain a state dict")
    state = {k.removeprefix("module."): v for k, v in obj.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def build_backbone(name: str = "resnet50", last_stride: int = 1,
                   weights: str | Path | None = None) -> ResNetBackbone:
    """Build a ResNet trunk with ``last_stride`` in layer4 (1 for re-ID, as in the paper, Sec. 4.2).

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision weights; needs the internet the
    first time) or a path to a local checkpoint (torchvision ResNet or scwm checkpoint), loaded with
    ``weights_only=True``.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    factory, imagenet, channels = _FACTORIES[name]
    resnet = factory(weights=None)
    if weights == "imagenet":
        try:
            state = imagenet.get_state_dict(progress=False)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            raise WeightLoadError(
                f"could not download ImageNet weights for {name} ({exc}). This machine may be offline: "
                "place a torchvision checkpoint file locally and pass its path instead, or use weights=None."
            ) from exc
        resnet.load_state_dict(state)
    _set_last_stride(resnet, last_stride)
    backbone = ResNetBackbone(resnet, channels)
    if weights not in (None, "", "none", "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise WeightLoadError(f"weights file not found: {path}")
        obj = load_torch_file(path, WeightLoadError, "weights file")
        load_state_dict_report(backbone, extract_backbone_state(obj, str(path)), str(path))
    return backbone

"""Backbones with the re-ID modification (last stride 1), and the one weight loader they all share.

``build_backbone`` returns a module mapping images (B, 3, H, W) to the last feature map F (Eq. 1),
of shape (B, C, H/16, W/16) with last stride 1 (C = 512 for ResNet-18/34, 2048 for ResNet-50/101 and
PLIP's ResNet-50, :mod:`scwm.models.plip_resnet`); its ``out_channels`` is C.

Weights (:func:`extract_backbone_state`, :func:`load_state_dict_report`) may come from a torchvision ResNet, a
fast-reid model (``backbone.`` keys, ``{"model": ...}``), an scwm checkpoint, PLIP's published checkpoint
(``{"ImgEncoder_state_dict": ...}``) or a whole PLIP / CLIP model (``image_encoder.`` / ``visual.`` keys beside
the text encoder's), each possibly with DDP / wrapper prefixes (``module.``, ``model.``); a file that does not
provide the whole trunk is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision import models as tvm

from scwm.models.plip_resnet import PLIPResNet
from scwm.utils import load_torch_file

log = logging.getLogger(__name__)

_FACTORIES = {
    "resnet18": (tvm.resnet18, tvm.ResNet18_Weights.IMAGENET1K_V1, 512),
    "resnet34": (tvm.resnet34, tvm.ResNet34_Weights.IMAGENET1K_V1, 512),
    "resnet50": (tvm.resnet50, tvm.ResNet50_Weights.IMAGENET1K_V2, 2048),
    "resnet101": (tvm.resnet101, tvm.ResNet101_Weights.IMAGENET1K_V2, 2048),
}
PLIP_BACKBONE = "plip_resnet50"
BACKBONES = (*_FACTORIES, PLIP_BACKBONE)

CONTAINER_KEYS = ("ImgEncoder_state_dict", "model", "state_dict", "model_state_dict")
"""Where checkpoints keep their state dict (PLIP's published files, fast-reid / scwm, common trainers)."""
WRAPPER_PREFIXES = ("module.", "model.")
"""Prefixes added by wrappers (DDP / DataParallel, EMA and trainer modules), removed from every key."""
ENCODER_PREFIXES = ("image_encoder.", "visual.", "backbone.")
"""The image trunk's sub-tree in a whole model (PLIP, CLIP, fast-reid / scwm); the rest is ignored."""
HEAD_PREFIXES = ("fc.", "attnpool.", "avg_proj.")
"""Heads on top of the trunk that scwm does not use (torchvision classifier, CLIP / PLIP projections)."""


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


Backbone = ResNetBackbone | PLIPResNet
"""What :func:`build_backbone` returns: images -> F, with ``out_channels``."""


def _set_last_stride(resnet: tvm.ResNet, stride: int) -> None:
    block = resnet.layer4[0]
    # torchvision puts the stride in conv2 for Bottleneck (ResNet v1.5) and conv1 for BasicBlock.
    conv = block.conv2 if isinstance(block, tvm.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _hint(module: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """A suggestion when ``state`` is a PLIP / CLIP trunk and ``module`` a torchvision one."""
    stem = [k for k in state if k.removeprefix("backbone.") in ("conv2.weight", "conv3.weight")]
    if stem and not any(isinstance(m, PLIPResNet) for m in module.modules()):
        return f" (it has a CLIP-style 3-convolution stem: build the backbone {PLIP_BACKBONE!r} for it)"
    return ""


def load_state_dict_report(module: nn.Module, state: dict[str, torch.Tensor], source: str,
                           required: str | None = "") -> None:
    """Load ``state`` into ``module``, logging missing and unexpected keys; WeightLoadError naming ``source``
    when a tensor does not fit, when nothing matches, or when a key of ``module`` starting with ``required``
    (``""``: every key, None: none) is absent (BatchNorm ``num_batches_tracked`` counters are never required).
    A PLIP trunk inside ``module`` first takes the stem of ``state``."""
    for name, sub in module.named_modules():
        if isinstance(sub, PLIPResNet):
            sub.adapt_to_state(state, f"{name}." if name else "")
    own = module.state_dict()
    shape_bad = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shape_bad:
        detail = ", ".join(f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shape_bad[:5])
        raise WeightLoadError(f"weights from {source} do not fit this architecture ({detail}){_hint(module, state)}")
    matched = {k: v for k, v in state.items() if k in own}
    unexpected = [k for k in state if k not in own]
    if not matched:
        raise WeightLoadError(
            f"no parameter of the model was found in {source}; first keys there: {list(state)[:5]}"
        )
    if required is not None:
        need = [k for k in own if k.startswith(required) and not _is_counter(k)]
        absent = [k for k in need if k not in matched]
        if absent:
            raise WeightLoadError(
                f"{source} does not hold the whole backbone trunk: {len(absent)} of its {len(need)} tensors are "
                f"missing, e.g. {absent[:5]}; keys there that fit nothing, e.g. {unexpected[:5]}"
                f"{_hint(module, state)}")
    result = module.load_state_dict(matched, strict=False)
    missing = [k for k in result.missing_keys if not _is_counter(k)]
    if missing:
        log.warning("%s: %d missing keys (kept at initialisation), e.g. %s", source, len(missing), missing[:5])
    if unexpected:
        log.info("%s: %d unexpected keys ignored, e.g. %s", source, len(unexpected), unexpected[:5])
    log.info("%s: %d tensors loaded", source, len(matched))


def _strip_wrappers(key: str) -> str:
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def checkpoint_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The state dict in a loaded checkpoint (inside :data:`CONTAINER_KEYS` if there), with the
    :data:`WRAPPER_PREFIXES` removed from its keys."""
    while isinstance(obj, dict):
        inner = next((obj[k] for k in CONTAINER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightLoadError(f"{source} does not contain a state dict")
    return {_strip_wrappers(k): v for k, v in obj.items()}


def _log_pixel_statistics(state: Mapping[str, torch.Tensor], source: str) -> None:
    """fast-reid models store the normalisation they were trained with (``pixel_mean`` / ``pixel_std``, 0-255)."""
    mean, std = state.get("pixel_mean"), state.get("pixel_std")
    if mean is None or std is None or mean.numel() != 3 or std.numel() != 3:
        return
    scale = 255.0 if float(mean.max()) > 1 else 1.0
    log.info("%s was trained on pixels normalised with mean %s, std %s (--data.mean / --data.std)", source,
             " ".join(f"{v / scale:.4f}" for v in mean.flatten().tolist()),
             " ".join(f"{v / scale:.4f}" for v in std.flatten().tolist()))


def extract_backbone_state(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The image trunk's weights in a loaded checkpoint (or state dict), keys as the trunk names them: the
    :data:`ENCODER_PREFIXES` sub-tree when there is one, without the :data:`HEAD_PREFIXES` heads."""
    state = checkpoint_state_dict(obj, source)
    _log_pixel_statistics(state, source)
    ignored: list[str] = []
    while (prefix := next((p for p in ENCODER_PREFIXES if any(k.startswith(p) for k in state)), None)) is not None:
        ignored += [k for k in state if not k.startswith(prefix)]
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    ignored += [k for k in state if k.startswith(HEAD_PREFIXES)]
    if ignored:
        roots = sorted({k.split(".")[0] for k in ignored})
        log.info("%s: %d keys outside the image trunk ignored (%s)", source, len(ignored), ", ".join(roots[:8]))
    return {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}


def load_backbone_weights(backbone: nn.Module, weights: str | Path) -> None:
    """Load a weights file into a trunk (:func:`extract_backbone_state`); the whole trunk must be there."""
    path = Path(weights)
    if not path.is_file():
        raise WeightLoadError(f"weights file not found: {path}")
    obj = load_torch_file(path, WeightLoadError, "weights file")
    load_state_dict_report(backbone, extract_backbone_state(obj, str(path)), str(path))


def build_backbone(name: str = "resnet50", last_stride: int = 1,
                   weights: str | Path | None = None) -> Backbone:
    """Build a trunk with ``last_stride`` in layer4 (1 for re-ID, as in the paper, Sec. 4.2).

    ``weights``: ``None`` (random init), ``"imagenet"`` (torchvision weights; needs the internet the
    first time; not for ``plip_resnet50``) or a path to a local checkpoint (see the module docstring),
    loaded with ``weights_only=True``.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    backbone: Backbone
    if name == PLIP_BACKBONE:
        if weights == "imagenet":
            raise WeightLoadError(f"{name} has no ImageNet weights: pass a PLIP checkpoint path, or none")
        backbone = PLIPResNet(last_stride)
    else:
        factory, imagenet, channels = _FACTORIES[name]
        resnet = factory(weights=None)
        if weights == "imagenet":
            try:
                state = imagenet.get_state_dict(progress=False)
            except (OSError, RuntimeError) as exc:  # URLError is an OSError
                raise WeightLoadError(
                    f"could not download ImageNet weights for {name} ({exc}). This machine may be offline: place "
                    "a torchvision checkpoint file locally and pass its path instead, or use weights=None."
                ) from exc
            resnet.load_state_dict(state)
        _set_last_stride(resnet, last_stride)
        backbone = ResNetBackbone(resnet, channels)
    if weights not in (None, "", "none", "imagenet"):
        load_backbone_weights(backbone, weights)
    return backbone

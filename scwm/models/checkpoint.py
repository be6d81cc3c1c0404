"""Model checkpoints: the network weights together with everything needed to rebuild and feed it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from scwm import __version__
from scwm.models.scwm_net import SCWMNet
from scwm.utils import atomic_torch_save, load_torch_file

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class ModelSpec:
    """How to rebuild the network and preprocess its input (stored in every checkpoint and export)."""

    backbone: str = "resnet50"
    num_parts: int = 4
    height: int = 384
    width: int = 128
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    part_names: list[str] = field(default_factory=list)
    last_stride: int = 1
    part_mode: str = "learned"
    version: str = __version__

    def __post_init__(self) -> None:
        if not self.part_names:
            self.part_names = [f"part{i + 1}" for i in range(self.num_parts - 1)] + ["background"]
        if len(self.part_names) != self.num_parts:
            raise ValueError(f"part_names has {len(self.part_names)} names for num_parts={self.num_parts}")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelSpec:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def build(self) -> SCWMNet:
        """A randomly initialised network of this shape."""
        return SCWMNet(self.backbone, num_parts=self.num_parts, last_stride=self.last_stride,
                       part_mode=self.part_mode)


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or not an scwm checkpoint."""


def save_checkpoint(path: str | Path, model: SCWMNet, spec: ModelSpec, **extra: Any) -> None:
    """Atomically write ``{"model", "spec", **extra}``; classifier weights are kept only in ``extra``
    state (pass them explicitly) because their size changes with the number of clusters."""
    state = {k: v for k, v in model.state_dict().items() if "classifier" not in k}
    atomic_torch_save(path, {"model": state, "spec": spec.to_dict(), **extra})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only=True`` (no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    obj = load_torch_file(path, CheckpointError, "checkpoint")
    if not isinstance(obj, dict) or "model" not in obj or "spec" not in obj:
        raise CheckpointError(f"{path} is not an scwm checkpoint (expected keys 'model' and 'spec')")
    return obj


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SCWMNet, ModelSpec]:
    """Rebuild the network stored in ``path`` in eval mode on ``device``; returns (model, spec)."""
    obj = read_checkpoint(path)
    spec = ModelSpec.from_dict(obj["spec"])
    model = spec.build()
    state = {k: v for k, v in obj["model"].items() if "classifier" not in k}
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path} does not match its spec: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model.to(device).eval(), spec

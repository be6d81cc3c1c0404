"""Models: ResNet / PLIP ResNet-50 backbones (last stride 1), the SCWM network, chunked BatchNorm."""

from scwm.models.backbone import BACKBONES, WeightLoadError, build_backbone
from scwm.models.chunked_bn import convert_to_chunked_bn
from scwm.models.scwm_net import SCWMNet, SCWMOutput, part_pooling, stripe_probs

__all__ = ["BACKBONES", "WeightLoadError", "build_backbone", "convert_to_chunked_bn", "SCWMNet",
           "SCWMOutput", "part_pooling", "stripe_probs"]

from scwm.models.checkpoint import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    ModelSpec,
    load_model,
    read_checkpoint,
    save_checkpoint,
)

__all__ += ["IMAGENET_MEAN", "IMAGENET_STD", "CheckpointError", "ModelSpec", "load_model",
            "read_checkpoint", "save_checkpoint"]

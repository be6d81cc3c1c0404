"""The analyses read the model-zoo format as well as trained checkpoints (experiments.analyses.feature_model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from experiments.analyses import feature_model
from scwm.models import CheckpointError, SCWMNet, load_model
from training.zoo import save_zoo


def test_zoo_file_loads_with_its_own_backbone_and_size(tmp_path: Path) -> None:
    src = SCWMNet("resnet18", num_parts=5)
    with torch.no_grad():
        src.backbone.conv1.weight.normal_()
    spec = {"backbone": "resnet18", "num_parts": 5, "height": 96, "width": 48}
    path = save_zoo(tmp_path / "z.pt", src.state_dict(), spec, {})
    with pytest.raises(CheckpointError, match="missing"):  # no part branch: not a trained checkpoint
        load_model(path)
    model, got = feature_model(path)
    assert not model.training
    assert (got.backbone, got.num_parts, got.height, got.width) == ("resnet18", 5, 96, 48)
    assert torch.equal(model.backbone.conv1.weight, src.backbone.conv1.weight.half().float())


def test_trained_checkpoint_goes_through_load_model(tmp_path: Path) -> None:
    from scwm.models import save_checkpoint
    from training.config import preset_config
    from training.model_init import model_spec

    cfg = preset_config("synthetic")
    net = SCWMNet("resnet18", num_parts=cfg.model.num_parts)
    with torch.no_grad():
        net.part_head.weight.normal_()
    save_checkpoint(tmp_path / "m.pt", net, model_spec(cfg))
    model, _ = feature_model(tmp_path / "m.pt")
    assert torch.equal(model.part_head.weight, net.part_head.weight)

"""Model-zoo files: what they keep, that their bytes are reproducible, the cache check of source pretraining,
and the committed backbone (its hash in docs/MODEL_ZOO.md, its recipe = what ``--model.weights pretrain`` runs)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import torch

import training.pretrain as pretrain
from scwm.models import SCWMNet
from training.config import ZOO_SOURCE, preset_config
from training.model_init import load_initial_weights
from training.zoo import ZOO_FORMAT, read_zoo, save_zoo, zoo_state

ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_zoo_state_keeps_trunk_and_global_neck_in_fp16() -> None:
    state = SCWMNet("resnet18", num_parts=4, num_classes=5).state_dict()
    kept = zoo_state(state)
    assert set(kept) == {k for k in state if k.startswith(("backbone.", "global_bn."))}
    assert not any("classifier" in k or k.startswith(("part_head.", "part_bn.")) for k in kept)
    assert {v.dtype for v in kept.values() if v.is_floating_point()} == {torch.float16}
    assert kept["global_bn.num_batches_tracked"].dtype == torch.int64
    assert list(kept) == sorted(kept)
    with pytest.raises(ValueError, match="no backbone"):
        zoo_state({"part_head.weight": torch.zeros(1)})


def test_zoo_bytes_do_not_depend_on_the_file_name(tmp_path: Path) -> None:
    state = SCWMNet("resnet18", num_parts=4).state_dict()
    spec = {"backbone": "resnet18"}
    a = save_zoo(tmp_path / "a.pt", state, spec, {"pretrain": {"epochs": 1}})
    b = save_zoo(tmp_path / "sub" / "other-name.pt", state, spec, {"pretrain": {"epochs": 1}})
    assert _sha(a) == _sha(b)
    assert _sha(save_zoo(tmp_path / "c.pt", state, spec, {"pretrain": {"epochs": 2}})) != _sha(a)
    assert read_zoo(a)["format"] == ZOO_FORMAT
    torch.save({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="plain.pt"):
        read_zoo(tmp_path / "plain.pt")


def test_trainer_loads_a_zoo_file_into_any_number_of_parts(tmp_path: Path) -> None:
    src = SCWMNet("resnet18", num_parts=4)
    with torch.no_grad():
        src.backbone.conv1.weight.normal_()
        src.global_bn.running_mean.uniform_()
    path = save_zoo(tmp_path / "z.pt", src.state_dict(), {"backbone": "resnet18"}, {})
    dst = SCWMNet("resnet18", num_parts=7)
    load_initial_weights(dst, path)
    assert torch.equal(dst.backbone.conv1.weight, src.backbone.conv1.weight.half().float())
    assert torch.equal(dst.global_bn.running_mean, src.global_bn.running_mean.half().float())


def test_cached_pretraining_must_match_the_recipe(tmp_path: Path) -> None:
    cfg = preset_config("smoke", {"pretrain": {"checkpoint": str(tmp_path / "pre.pt")}})
    recipe = pretrain.pretrain_recipe(cfg, torch.device("cpu"))
    assert "checkpoint" not in recipe["pretrain"] and recipe["pretrain"]["epochs"] == cfg.pretrain.epochs
    path = save_zoo(tmp_path / "pre.pt", SCWMNet("resnet18", num_parts=4).state_dict(), {}, recipe)
    assert pretrain.run_pretraining(cfg) == path  # cached, same recipe: not retrained
    longer = cfg.model_copy(update={"pretrain": cfg.pretrain.model_copy(update={"epochs": 9})})
    with pytest.raises(ValueError, match=r"pre\.pt was pretrained with other settings \(pretrain\.epochs\)"):
        pretrain.run_pretraining(longer)
    other_workers = cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_workers": 3})})
    assert pretrain.run_pretraining(other_workers) == path  # changes the bytes, not what the file is
    torch.save({"model": {}, "spec": {}}, path)  # an old-style full checkpoint
    with pytest.raises(ValueError, match="delete it to pretrain again"):
        pretrain.run_pretraining(cfg)


def test_committed_backbone_matches_model_zoo_doc_and_recipe() -> None:
    """The one binary in the tree: its SHA-256 is the one docs/MODEL_ZOO.md gives, it is <= 25 MB, and its
    recipe is exactly what ``--model.weights pretrain`` under the synthetic preset runs (bf16, no loader workers,
    CPU)."""
    path = ROOT / ZOO_SOURCE
    assert path.stat().st_size <= 25 * 2**20
    doc = (ROOT / "docs" / "MODEL_ZOO.md").read_text()
    assert _sha(path) in re.findall(r"\b[0-9a-f]{64}\b", doc)
    zoo = read_zoo(path)
    cfg = preset_config("synthetic", {"data": {"num_workers": 0}, "run": {"precision": "bf16"}})
    assert zoo["recipe"] == pretrain.pretrain_recipe(cfg, torch.device("cpu"))
    assert f"{100 * zoo['metrics']['heldout_mAP']:.1f}" in doc
    net = SCWMNet(zoo["spec"]["backbone"], num_parts=cfg.model.num_parts)
    load_initial_weights(net, path)  # loads without a shape error

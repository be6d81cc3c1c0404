"""A smoke-sized PLIP-analogue pretraining (tiny world, both tasks, a few iterations): what it writes (slow)."""

from __future__ import annotations

import json

import pytest

import training.pretrain as pretrain
from scwm.data.synthetic.attributes import ATTRIBUTE_GROUPS
from scwm.models import SCWMNet
from training.cli import config_from_args
from training.zoo import read_zoo, zoo_state

pytestmark = pytest.mark.slow


def test_pretraining_with_both_tasks_runs_and_reports(tmp_path) -> None:
    argv = ["--preset", "smoke", "--pretrain.root", str(tmp_path / "src"), "--pretrain.checkpoint",
            str(tmp_path / "pre.pt"), "--pretrain.epochs", "2", "--pretrain.iters", "2", "--pretrain.batch_size", "8",
            "--data.height", "64", "--data.width", "32", "--run.progress", "false", "--pretrain.attributes", "true",
            "--pretrain.colorization", "true", "--pretrain.eval_every", "1"]
    cfg, _ = config_from_args(argv)
    out = pretrain.run_pretraining(cfg)
    assert (tmp_path / "src" / "attributes.json").is_file()  # written by the generator
    records = [json.loads(line) for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    heldout = {f"heldout_attr_{g}" for g in ATTRIBUTE_GROUPS} | {"heldout_attr_mean", "heldout_mAP"}
    for r in records:
        assert {"attr", "attr_acc", "color"} <= r.keys() and heldout <= r.keys(), sorted(r)
        assert r["attr"] > 0 and 0 < r["color"] < 2 and all(0 <= r[k] <= 1 for k in heldout)
    zoo = read_zoo(out)
    assert set(zoo["model"]) == set(zoo_state(SCWMNet("resnet18", num_parts=4).state_dict()))  # heads discarded
    assert zoo["recipe"]["pretrain"]["attributes"] is True and zoo["recipe"]["pretrain"]["colorization"] is True
    assert heldout <= zoo["metrics"].keys()
    assert not out.with_suffix(".state.pt").exists()

"""Source pretraining end to end: checkpoint written, cached, resumable after a kill, CLI (slow)."""

from __future__ import annotations

import json

import pytest

import training.pretrain as pretrain
from scwm.models import load_model
from training.config import config_from_args

pytestmark = pytest.mark.slow


def _argv(tmp_path, *extra: str) -> list[str]:
    return ["--preset", "smoke", "--pretrain.root", str(tmp_path / "src"), "--pretrain.checkpoint",
            str(tmp_path / "pre.pt"), "--pretrain.epochs", "2", "--pretrain.iters", "2", "--pretrain.batch_size", "8",
            "--data.height", "64", "--data.width", "32", "--run.progress", "false", *extra]


def test_pretrain_resume_after_kill_and_cache(tmp_path, monkeypatch) -> None:
    cfg, _ = config_from_args(_argv(tmp_path))
    calls = {"n": 0}
    real = pretrain.batch_hard_triplet_loss

    def dies_in_second_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # first step of epoch 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(pretrain, "batch_hard_triplet_loss", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run_pretraining(cfg)
    out = tmp_path / "pre.pt"
    assert not out.exists() and out.with_suffix(".state.pt").is_file()
    monkeypatch.setattr(pretrain, "batch_hard_triplet_loss", real)
    assert pretrain.run_pretraining(cfg) == out
    assert not out.with_suffix(".state.pt").exists()
    epochs = [json.loads(line)["epoch"] for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    model, spec = load_model(out)
    assert (spec.backbone, spec.height, spec.width) == ("resnet18", 64, 32)
    stamp = out.stat().st_mtime_ns
    assert pretrain.main(_argv(tmp_path)) == out  # cached: not retrained
    assert out.stat().st_mtime_ns == stamp

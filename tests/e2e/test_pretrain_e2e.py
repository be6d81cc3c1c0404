"""Source pretraining end to end: zoo file written, cached, resumable after a kill, reproducible bytes, CLI (slow)."""

from __future__ import annotations

import hashlib
import json

import pytest

import training.pretrain as pretrain
from training.cli import config_from_args
from training.zoo import read_zoo

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
    zoo = read_zoo(out)
    assert (zoo["spec"]["backbone"], zoo["spec"]["height"], zoo["spec"]["width"]) == ("resnet18", 64, 32)
    assert zoo["recipe"]["pretrain"]["epochs"] == 2 and 0 <= zoo["metrics"]["heldout_mAP"] <= 1
    stamp = out.stat().st_mtime_ns
    assert pretrain.main(_argv(tmp_path)) == out  # cached: not retrained
    assert out.stat().st_mtime_ns == stamp


def test_pretraining_twice_gives_the_same_bytes(tmp_path) -> None:
    """The same recipe on the same machine: the same SHA-256, whatever the output file is called."""
    digests = []
    for name in ("first.pt", "second-name.pt"):
        cfg, _ = config_from_args(_argv(tmp_path, "--pretrain.checkpoint", str(tmp_path / name)))
        digests.append(hashlib.sha256(pretrain.run_pretraining(cfg).read_bytes()).hexdigest())
    assert digests[0] == digests[1]

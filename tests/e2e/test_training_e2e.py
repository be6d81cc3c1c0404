"""End-to-end tests of the SCWM loop on the tiny synthetic world: outputs, resume, failure handling, DDP (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import training.stages as stages
from scwm.models import load_model
from training.run import main

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("world")
    return {"target": base / "tiny-seed0", "source": base / "tiny-seed1", "ckpt": base / "pre.pt", "base": base}


def _args(world: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--preset", "smoke", "--data.root", str(world["target"]), "--pretrain.root", str(world["source"]),
        "--pretrain.checkpoint", str(world["ckpt"]), "--pretrain.iters", "2", "--pretrain.batch_size", "8",
        "--data.height", "64", "--data.width", "32", "--optim.batch_size", "8", "--optim.num_instances", "2",
        "--optim.iters", "3", "--run.output", str(out), "--run.progress", "false", *extra,
    ]


def test_run_writes_results_and_loadable_model(world, tmp_path) -> None:
    summary = main(_args(world, tmp_path / "run"))
    out = tmp_path / "run"
    results = json.loads((out / "results.json").read_text())
    assert set(results["final"]) == {"mAP", "rank1", "rank5", "rank10", "mINP"}
    assert 0.0 <= results["final"]["mAP"] <= 1.0
    assert results["model"] == "model.pt" and results["metrics"] == "metrics.jsonl"  # portable run folder
    assert Path(summary["model"]) == out / "model.pt"  # the returned summary keeps usable paths
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [-1, 0, 1]  # -1: the initial model (direct transfer)
    assert 0.0 <= records[0]["mAP"] <= 1.0 and "loss_total" not in records[0]
    for key in ("num_clusters", "loss_total", "loss_parsing", "loss_diversity", "loss_nce", "loss_separation",
                "loss_id", "pseudo_mask_miou", "pred_mask_miou", "train_images_per_s", "mAP"):
        assert key in records[-1], key
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    model, spec = load_model(summary["model"])
    assert spec.height == 64 and spec.num_parts == 4
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 32)).global_feat.shape == (2, 512)


def test_resume_after_kill_matches_uninterrupted(world, tmp_path, monkeypatch) -> None:
    ref = main(_args(world, tmp_path / "ref"))
    real_train_epoch = stages.train_epoch

    def killed(*args, **kwargs):
        if args[5] == 1:  # epoch index: die in the middle of the second epoch
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr("training.run.train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        main(_args(world, tmp_path / "res"))
    monkeypatch.setattr("training.run.train_epoch", real_train_epoch)
    assert json.loads((tmp_path / "res" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 0
    resumed = main(_args(world, tmp_path / "res"))
    assert resumed["final"]["mAP"] == pytest.approx(ref["final"]["mAP"], abs=1e-4)
    m1, _ = load_model(ref["model"])
    m2, _ = load_model(resumed["model"])
    for (k, a), b in zip(m1.state_dict().items(), m2.state_dict().values(), strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)
    records = [json.loads(line) for line in (tmp_path / "res" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [-1, 0, 1]


def test_killed_after_last_checkpoint_keeps_final_figures(world, tmp_path, monkeypatch) -> None:
    out = tmp_path / "late"
    ref = main(_args(world, out, "--optim.epochs", "1"))
    (out / "results.json").unlink()  # killed after the last checkpoint, before results.json
    resumed = main(_args(world, out, "--optim.epochs", "1"))
    assert resumed["final"] == ref["final"] and resumed["final"]["mAP"] >= 0.0
    # no evaluation logged for the last epoch (e.g. metrics.jsonl lost): evaluated again, same weights
    (out / "results.json").unlink()
    (out / "metrics.jsonl").write_text("")
    again = main(_args(world, out, "--optim.epochs", "1"))
    assert again["final"]["mAP"] == pytest.approx(ref["final"]["mAP"], abs=1e-6)


def test_resume_refuses_other_config(world, tmp_path) -> None:
    main(_args(world, tmp_path / "a", "--optim.epochs", "1"))
    with pytest.raises(ValueError, match="different configuration"):
        main(_args(world, tmp_path / "a", "--optim.epochs", "1", "--cluster.eta", "2.0"))


def test_no_cluster_epoch_is_skipped_not_a_crash(world, tmp_path) -> None:
    main(_args(world, tmp_path / "nc", "--optim.epochs", "1", "--cluster.eps", "0.001",
               "--cluster.min_samples", "50"))
    rec = json.loads((tmp_path / "nc" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["skipped"] is True and rec["num_clusters"] == 0


def test_nan_loss_stops_with_message_and_keeps_checkpoint(world, tmp_path, monkeypatch) -> None:
    out = tmp_path / "nan"
    main(_args(world, out, "--optim.epochs", "1"))
    good = (out / "checkpoint.pt").read_bytes()
    real = stages.total_loss

    def nan_loss(*args, **kwargs):
        loss, terms = real(*args, **kwargs)
        return loss * float("nan"), terms

    monkeypatch.setattr(stages, "total_loss", nan_loss)
    with pytest.raises(FloatingPointError, match="epoch 2"):
        main(_args(world, out, "--optim.epochs", "2"))
    assert (out / "checkpoint.pt").read_bytes() == good


@pytest.mark.parametrize("variant", [
    ["--cluster.part_source", "stripes", "--loss.nce", "false", "--loss.separation", "false"],
    ["--cluster.part_source", "cascaded", "--loss.memory_update", "hardest", "--loss.nce_literal", "true",
     "--run.precision", "bf16"],
    ["--cluster.supervised", "true", "--model.bn_chunks", "2", "--loss.diversity", "false",
     "--cluster.far_pairs", "feature"],
    ["--cluster.part_source", "gt", "--loss.diversity_sum", "true"],
])
def test_ablation_variants_run(world, tmp_path, variant) -> None:
    summary = main(_args(world, tmp_path / "v", "--optim.epochs", "1", *variant))
    assert 0.0 <= summary["final"]["mAP"] <= 1.0
    rec0 = next(r for r in map(json.loads, (tmp_path / "v" / "metrics.jsonl").read_text().splitlines())
                if r["epoch"] == 0)
    assert 0.0 <= rec0["fg_norm_auc"] <= 1.0  # logged with ground-truth masks, with or without parsing
    assert 0.0 <= rec0["fg_norm_auc_within"] <= 1.0  # the same cue at fixed grid positions
    if "gt" in variant:  # oracle masks are scored against the same ground truth they come from
        rec = rec0
        assert 0.0 < rec["pseudo_mask_fg_iou"] <= 1.0 and 0.0 < rec["pseudo_mask_miou"] <= 1.0, rec


def test_ddp_two_processes_gloo(world, tmp_path) -> None:
    main(_args(world, tmp_path / "warm", "--optim.epochs", "1"))  # data + pretraining cached
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "training.run", *_args(world, tmp_path / "ddp", "--optim.epochs", "1", "--model.bn_chunks", "2")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # bn_chunks counts chunks of the global batch: 2 chunks on 2 processes is one chunk (plain BatchNorm) per process
    log_text = (tmp_path / "ddp" / "train.log").read_text() + proc.stderr
    assert "2 chunk(s) of the global batch of 8, 1 per process, 4 images each" in log_text, log_text[-2000:]
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert 0.0 <= results["final"]["mAP"] <= 1.0
    rec = json.loads((tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["loss_total"] > 0


def test_folder_of_unlabeled_images(world, tmp_path) -> None:
    main(_args(world, tmp_path / "warm2", "--optim.epochs", "1"))  # make sure the tiny world exists
    folder = world["target"] / "bounding_box_train"
    summary = main(_args(world, tmp_path / "folder", "--optim.epochs", "1", "--data.kind", "folder",
                         "--data.root", str(folder), "--data.camera_regex", r"_c(\d+)s", "--run.eval_every", "0"))
    assert summary["final"] == {}
    rec = json.loads((tmp_path / "folder" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "mAP" not in rec and "pseudo_mask_miou" not in rec and rec["num_clusters"] >= 0


def test_ema_teacher_is_saved_and_resumed(world, tmp_path, monkeypatch) -> None:
    """--model.ema_decay: the saved model is the teacher (not the trained model), and a run killed in its second
    epoch resumes to the same teacher."""
    extra = ("--model.ema_decay", "0.5")
    ref = main(_args(world, tmp_path / "ref", *extra))
    state = torch.load(tmp_path / "ref" / "checkpoint.pt", map_location="cpu", weights_only=True)
    saved, _ = load_model(ref["model"])
    differs = False
    for k, v in saved.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, state["teacher"][k], msg=k)
            differs |= not torch.equal(v, state["model"][k])
    assert differs, "the teacher should lag the trained model"
    real_train_epoch = stages.train_epoch

    def killed(*args, **kwargs):
        if args[5] == 1:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr("training.run.train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        main(_args(world, tmp_path / "res", *extra))
    monkeypatch.setattr("training.run.train_epoch", real_train_epoch)
    resumed = main(_args(world, tmp_path / "res", *extra))
    assert resumed["final"]["mAP"] == pytest.approx(ref["final"]["mAP"], abs=1e-4)
    again, _ = load_model(resumed["model"])
    for (k, a), b in zip(saved.state_dict().items(), again.state_dict().values(), strict=True):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=k)

"""scripts/gpu_check.sh: clean SKIPs without a GPU, its pure logic, and its clustering and DDP checks run on the CPU
(gloo instead of NCCL, small sizes) so that the code a GPU box runs first has run here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(mod)
    return mod


gc = _module()


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a GPU box
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_without_a_gpu_every_check_skips_cleanly() -> None:
    proc = _run()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["SKIP", name] for name in gc.CHECKS]
    assert all("no CUDA device" in line for line in lines[:-1])
    assert lines[-1].startswith("gpu_check: 0 passed, 0 failed, 5 skipped")
    assert "Traceback" not in proc.stderr
    only = _run("--only", "ddp", "clustering")
    assert only.returncode == 0 and [ln.split()[1] for ln in only.stdout.splitlines()[:-1]] == ["ddp", "clustering"]
    bad = _run("--only", "tpu")
    assert bad.returncode == 2 and "invalid choice: 'tpu'" in bad.stderr


def test_result_lines_and_exit_code() -> None:
    ok = gc.Result("faiss", "PASS", "top-10 agreement 1.0000", 3.2)
    assert gc.format_result(ok) == "PASS faiss      top-10 agreement 1.0000  (3 s)"
    skip = gc.Result("onnx", "SKIP", "no CUDA device")
    assert gc.format_result(skip) == "SKIP onnx       no CUDA device"
    assert gc.exit_code([ok, skip]) == 0
    assert gc.exit_code([ok, skip, gc.Result("ddp", "FAIL", "x")]) == 1
    assert gc.verdict(True) == "PASS" and gc.verdict(False) == "FAIL"


def test_a_check_that_raises_is_a_fail_line_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(device: object) -> object:
        raise RuntimeError("CUDA error: out of memory\nmore detail")

    monkeypatch.setitem(gc.RUNNERS, "faiss", broken)
    r = gc.run_check("faiss", torch.device("cpu"))
    assert (r.status, r.figure) == ("FAIL", "RuntimeError: CUDA error: out of memory") and r.seconds >= 0


def test_parity_measures() -> None:
    a = np.array([[1, 2, 3], [4, 5, 6]])
    assert gc.topk_agreement(a, a[:, ::-1]) == 1.0  # order within the top-k does not matter
    assert gc.topk_agreement(a, np.array([[1, 2, 9], [7, 8, 9]])) == pytest.approx(2 / 6)
    with pytest.raises(ValueError, match="one shape"):
        gc.topk_agreement(a, a[:, :2])
    x = np.random.default_rng(0).standard_normal((4, 8))
    assert gc.min_cosine(x, 3 * x) == pytest.approx(1.0)
    y = x.copy()
    y[2] = -y[2]
    assert gc.min_cosine(x, y) == pytest.approx(-1.0)


def test_ddp_process_count_and_worker_output() -> None:
    assert [gc.ddp_processes(n) for n in (1, 2, 8)] == [1, 2, 2]
    assert gc.parse_ddp_output("noise\nGPUCHECK_DDP {\"world\": 2}\n") == {"world": 2}
    with pytest.raises(ValueError, match="no result line"):
        gc.parse_ddp_output("Traceback ...")


def test_amp_overrides_make_the_market1501_training_setup() -> None:
    from training.config import preset_config

    cfg = preset_config("market1501", gc.amp_overrides("/tmp/x", "cuda:0", 30))
    assert (cfg.model.backbone, cfg.data.height, cfg.data.width, cfg.optim.batch_size) == ("resnet50", 384, 128, 64)
    assert cfg.run.precision == "amp" and cfg.run.device == "cuda:0" and cfg.cluster.supervised
    assert cfg.model.weights is None and cfg.optim.iters == 30 and cfg.data.kind == "synthetic"
    assert cfg.model.bn_chunks == preset_config("market1501").model.bn_chunks


def test_clustering_check_runs_on_the_cpu_at_small_scale() -> None:
    r = gc.run_check("clustering", torch.device("cpu"), n=240, channels=32, height=6, width=4, batch=64,
                     parity_n=120)
    assert r.status == "PASS", r.figure
    assert "240 maps 32x6x4 (batch 64" in r.figure and "partition ARI 1.000" in r.figure
    g, p = gc.clustered_features(60, 16, 3, torch.device("cpu"))
    assert g.shape == (60, 16) and p.shape == (60, 3, 16)
    assert torch.allclose(g.norm(dim=1), torch.ones(60)) and torch.allclose(p.norm(dim=2), torch.ones(60, 3))


@pytest.mark.slow
def test_ddp_check_runs_two_gloo_processes_under_torchrun() -> None:
    """The DDP worker on 2 CPU processes: identical parameters, rank-ordered gather, all-reduce sums."""
    r = gc.run_check("ddp", torch.device("cpu"), nproc=2, height=64, width=32, mib=1)
    assert r.status == "PASS", r.figure
    assert r.figure.startswith("gloo world 2: parameters identical after 3 steps (spread 0.0e+00)")

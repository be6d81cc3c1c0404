"""The pseudo-label quality benchmark: cluster statistics against known answers, and one small end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.analyses.pseudo_labels import cluster_quality, main
from scwm.models import ModelSpec, save_checkpoint


def test_cluster_quality_known_answers() -> None:
    pids = np.array([1, 1, 2, 2, 3, 3])
    perfect = cluster_quality(np.array([0, 0, 1, 1, 2, 2]), pids)
    assert perfect == {"clusters": 3, "clustered": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    merged = cluster_quality(np.array([0, 0, 0, 0, -1, -1]), pids)  # two ids merged, one left out
    assert merged["clusters"] == 1 and merged["clustered"] == pytest.approx(4 / 6)
    assert merged["nmi"] == pytest.approx(0.0) and merged["ari"] == pytest.approx(0.0)
    none = cluster_quality(np.full(6, -1), pids)
    assert none["clusters"] == 0 and none["clustered"] == 0.0 and np.isnan(none["nmi"])


def test_bench_runs_on_tiny_world(tmp_path: Path) -> None:
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", spec.build().eval(), spec)
    res = main(["--checkpoint", str(tmp_path / "m.pt"), "--presets", "tiny", "--data-dir", str(tmp_path / "data"),
                "--eps", "0.3", "0.9", "--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(res))
    tiny = res["tiny"]
    assert tiny["identities"] == 8 and set(tiny["eps"]) == {"0.3", "0.9"}
    for r in tiny["eps"].values():
        assert 0.0 <= r["clustered"] <= 1.0 and r["clusters"] >= 0
    assert "| 0.9 |" in (tmp_path / "r.md").read_text()

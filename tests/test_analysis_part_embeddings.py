"""Part-embedding retrieval benchmark: the embedding combinations and one run on a tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from experiments.analyses.part_embeddings import EMBEDDINGS, combine, main
from scwm.data.synthetic import generate
from scwm.models import ModelSpec, save_checkpoint


def test_combine_known_values() -> None:
    g = F.normalize(torch.tensor([[1.0, 0.0]]), dim=1)
    p = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # two unit part embeddings
    assert torch.equal(combine(g, p, "global"), g)
    torch.testing.assert_close(combine(g, p, "parts"), torch.tensor([[0.0, 1.0, 1.0, 0.0]]) / 2 ** 0.5)
    # global + parts / sqrt(2): the global half and the part half weigh the same before normalization
    gp = combine(g, p, "global+parts")
    torch.testing.assert_close(gp, torch.tensor([[1.0, 0.0, 0.0, 2 ** -0.5, 2 ** -0.5, 0.0]]) / 2 ** 0.5)
    assert gp.norm().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown embedding"):
        combine(g, p, "mean")


def test_bench_scores_a_model_tree(tmp_path: Path) -> None:
    root = generate("tiny", tmp_path / "tiny", seed=0, progress=False)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    run = tmp_path / "runs" / "t1-wm-scc" / "seed0"
    run.mkdir(parents=True)
    save_checkpoint(run / "model.pt", spec.build().eval(), spec)
    res = main(["--runs", str(tmp_path / "runs"), "--experiments", "t1-wm-scc", "t2-oracle", "--seeds", "0",
                "--data-root", str(root), "--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    assert set(res) == {"t1-wm-scc"}  # t2-oracle has no model: skipped
    scores = res["t1-wm-scc"]["0"]
    assert set(scores) == set(EMBEDDINGS) and all(0.0 <= s["mAP"] <= 1.0 for s in scores.values())
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(res))
    assert "| t1-wm-scc | 1 |" in (tmp_path / "r.md").read_text()

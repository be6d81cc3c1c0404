"""Parsing-quality benchmark: the far-pairs rows and their comparison with the constant mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from experiments.analyses.parsing_quality import main, variants
from scwm.data.synthetic import generate
from scwm.models import ModelSpec, save_checkpoint


def test_far_pairs_rows_name_their_constant_mode_row() -> None:
    v = variants(4, 3.0, [1.0, 3.0, math.inf], [4], eta_parts=[4, 7])
    far = {k: r for k, r in v.items() if r.get("far_pairs") == "feature"}
    assert sorted(far) == ["SCC eta=1, far pairs by feature", "SCC eta=1, l=7, far pairs by feature",
                           "SCC eta=3, far pairs by feature", "SCC eta=3, l=7, far pairs by feature"]
    for r in far.values():  # eta = inf has no far pairs, so no feature row
        base = v[r["base"]]
        assert (base["l"], base["eta"], base.get("far_pairs", "constant")) == (r["l"], r["eta"], "constant")


def test_cli_far_pairs_at_eta_one_is_plain_clustering(tmp_path: Path) -> None:
    """Known answer: with every pair forbidden (eta = 1 cell) the feature order is eta = inf's clustering,
    so its scores equal the eta = inf row's; at an eta beyond the grid nothing changes."""
    world = generate("tiny", tmp_path / "w" / "tiny-seed0", seed=0, progress=False)
    spec = ModelSpec(backbone="resnet18", num_parts=4, height=64, width=32)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "m.pt", spec.build().eval(), spec)
    main(["--checkpoint", str(tmp_path / "m.pt"), "--presets", "tiny", "--data-dir", str(world.parent),
          "--max-images", "16", "--etas", "1", "50", "inf", "--parts", "4", "--eta-parts", "4",
          "--out", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md"), "--title", "far pairs"])
    res = next(iter(json.loads((tmp_path / "r.json").read_text()).values()))
    one, inf, wide = res["SCC eta=1, far pairs by feature"], res["SCC eta=inf"], res["SCC eta=50, far pairs by feature"]
    assert (one["part_miou"], one["fg_iou"]) == (inf["part_miou"], inf["fg_iou"])
    assert one["changed_fg_cells"] > 0.0 and one["changed_images"] > 0.0
    assert wide["changed_fg_cells"] == 0.0 and wide["changed_images"] == 0.0
    text = (tmp_path / "r.md").read_text()
    assert text.startswith("## far pairs") and "--eta-parts 4" in text and "--title 'far pairs'" in text
    assert "--etas 1 50 inf --parts 4" in text  # the Command line reproduces the run's sweeps

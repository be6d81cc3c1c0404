"""Parsing ceiling by map size: known answers on hand-built masks, and the CLI on a generated world."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from experiments.analyses.parsing_ceiling import ceiling_scores, main, parse_size
from scwm.data.synthetic import generate


def _figure(n: int = 2) -> torch.Tensor:
    """(n, 16, 8) masks: head, upper body, lower body, shoes in rows of 4, columns 2-5; background elsewhere."""
    gt = torch.zeros(n, 16, 8, dtype=torch.long)
    for label in range(1, 5):
        gt[:, 4 * (label - 1):4 * label, 2:6] = label
    return gt


def test_full_resolution_is_exact_and_coarse_cells_halve_the_iou() -> None:
    gt = _figure()
    full = ceiling_scores(gt, 5, (16, 8))  # l - 1 = 4 parts: head, upper (+ accessory), lower, shoes
    assert full["oracle_part_miou"] == pytest.approx(1.0) and full["oracle_fg_iou"] == pytest.approx(1.0)
    # 4x2 cells of 4x4 pixels: every cell is half body (ties go to the body), so each part covers its row
    # band at full width, twice the label's area: IoU 1/2 for every part and for the foreground
    coarse = ceiling_scores(gt, 5, (4, 2))
    assert coarse["oracle_part_miou"] == pytest.approx(0.5) and coarse["oracle_fg_iou"] == pytest.approx(0.5)
    # 5 stripes of a 4-row grid: rows 0..3 take stripes 0, 1, 2, 3 (r * 5 // 4), the same bands: IoU 1/2 each
    assert ceiling_scores(gt, 5, (4, 2))["stripes_part_miou"] == pytest.approx(0.5)
    # one part for everything: the assignment picks one label, IoU 1/4 with it, the 3 others count 0
    assert ceiling_scores(gt, 2, (16, 8))["oracle_part_miou"] == pytest.approx(0.25 / 4)


def test_parse_size() -> None:
    assert parse_size("16x8", (128, 64)) == (16, 8) and parse_size("full", (128, 64)) == (128, 64)
    for bad in ("16", "ax8", "0x4"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad, (128, 64))


def test_cli_on_a_generated_world(tmp_path: Path) -> None:
    world = generate("tiny", tmp_path / "w" / "tiny-seed0", seed=0, progress=False)
    out, md = tmp_path / "c.json", tmp_path / "c.md"
    main(["--presets", "tiny", "--parts", "6", "--sizes", "8x4", "full", "--max-images", "20",
          "--data-dir", str(world.parent), "--out", str(out), "--markdown", str(md)])
    rows = {r["size"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["full"]["oracle_part_miou"] == pytest.approx(1.0)  # 5 parts for 5 labels at full resolution
    assert rows["8x4"]["oracle_part_miou"] < rows["full"]["oracle_part_miou"]
    assert "| `tiny` | 6 | 20 |" in md.read_text()
    with pytest.raises(SystemExit):
        main(["--presets", "tiny", "--data-dir", str(world.parent), "--out", str(out), "--markdown", str(md)])

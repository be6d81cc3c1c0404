"""Tests of the README's generated headline table (experiments/headline.py)."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from test_experiments import _write

from experiments import headline

PLIP, ZOO1 = (label for _, label in headline.HEADLINE_GRIDS)


def _start(mAP: float, r1: float) -> dict:
    return {"start": {"initial_mAP": mAP, "initial_rank1": r1}}


def test_headline_cells_are_mean_and_sample_sd_over_seeds(tmp_path: Path) -> None:
    grid = tmp_path / "plip.jsonl"
    maps, r1s = [0.38, 0.41, 0.35], [0.45, 0.47, 0.40]
    for seed, (m, r) in enumerate(zip(maps, r1s, strict=True)):
        _write(grid, "market", "t1-wm-scc", seed, m, r, **_start(0.272, 0.317))
    _write(grid, "market", "peer-cluster-contrast", 0, 0.394, 0.463, **_start(0.272, 0.317))
    table = headline.headline_table(tmp_path).splitlines()
    want = (f"| SCWM | {PLIP} | 3 | {100 * statistics.mean(maps):.1f} ± {100 * statistics.stdev(maps):.1f} | "
            f"{100 * statistics.mean(r1s):.1f} ± {100 * statistics.stdev(r1s):.1f} | - | not run | not run |")
    assert want in table
    assert f"| global-only Cluster-Contrast-style | {PLIP} | 1 | 39.4 | 46.3 | - | not run | not run |" in table
    assert f"| direct transfer (no target training) | {PLIP} | - | 27.2 | 31.7 | - | not run | - |" in table
    assert not any("identity-only" in line for line in table), "a grid with no run gets no row"


def test_headline_flags_runs_of_one_grid_that_started_elsewhere(tmp_path: Path) -> None:
    _write(tmp_path / "plip.jsonl", "market", "t1-wm-scc", 0, 0.4, 0.5, **_start(0.272, 0.317))
    _write(tmp_path / "plip.jsonl", "market", "t1-wm-scc", 1, 0.4, 0.5, **_start(0.300, 0.317))
    _write(tmp_path / "zoo-trunk01.jsonl", "market", "t1-wm-scc", 0, 0.4, 0.5, **_start(0.250, 0.317))
    table = headline.headline_table(tmp_path)
    assert f"| {PLIP} | - | differs | - |" in table
    assert f"| {ZOO1} | - | 25.0 | 31.7 |" in table, "each grid has its own start"
    # the same start measured on another CPU kind (bf16 kernels): equal as displayed, so one value
    _write(tmp_path / "zoo-trunk01.jsonl", "market", "t1-wm-scc", 1, 0.4, 0.5, **_start(0.25004, 0.31702))
    assert f"| {ZOO1} | - | 25.0 | 31.7 |" in headline.headline_table(tmp_path)


def test_update_readme_rewrites_only_between_the_markers(tmp_path: Path) -> None:
    _write(tmp_path / "zoo-trunk01.jsonl", "msmt", "t1-baseline", 0, 0.155, 0.242, **_start(0.121, 0.166))
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n{headline.BEGIN}\n| stale |\n{headline.END}\n\ntail\n")
    assert headline.update_readme(tmp_path, readme)
    text = readme.read_text()
    assert text.startswith("# title\n\nintro\n") and text.endswith(f"{headline.END}\n\ntail\n")
    assert "| stale |" not in text and f"| PPLR-style horizontal stripes baseline | {ZOO1} | - | not run" in text
    assert not headline.update_readme(tmp_path, readme), "a second update changes nothing"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="README.md: no results-table markers"):
        headline.update_readme(tmp_path, readme)


def test_the_repo_readme_holds_the_generated_table() -> None:
    text = headline.README_PATH.read_text()
    assert text.count(headline.BEGIN) == 1 and text.count(headline.END) == 1
    body = text[text.index(headline.BEGIN) + len(headline.BEGIN): text.index(headline.END)].strip()
    assert body == headline.headline_table(headline.RESULTS_DIR)

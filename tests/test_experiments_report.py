"""Tests of the harness's report checks (start state, initial weights), scoping, and docs/RESULTS.md."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from test_experiments import _write

import experiments.__main__ as cli
from experiments import registry as reg
from experiments import report, runner, stats


def _rewrite(grid: Path, exp: str, seed: int, **fields) -> None:
    """Change one recorded run of a grid file in place."""
    lines = [json.loads(x) for x in grid.read_text().splitlines()]
    for r in lines:
        if r["experiment"] == exp and r["seed"] == seed:
            r.update(fields)
    grid.write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_start_state_check_flags_seeds_that_began_elsewhere(tmp_path: Path) -> None:
    grid = tmp_path / "runs.jsonl"
    rec = {"epoch": 0, "num_clusters": 194, "cluster_nmi": 0.7787, "cluster_ari": 0.2228, "lr": 1e-3}
    assert runner.start_state([rec, {**rec, "epoch": 1}]) == {"num_clusters": 194, "cluster_nmi": 0.7787,
                                                              "cluster_ari": 0.2228}
    assert runner.start_state([{**rec, "epoch": 1}]) is None and runner.start_state([]) is None
    before = {"epoch": -1, "mAP": 0.272, "rank1": 0.317}  # the initial model, evaluated before training
    assert runner.start_state([before, rec]) == {"num_clusters": 194, "cluster_nmi": 0.7787, "cluster_ari": 0.2228,
                                                 "initial_mAP": 0.272, "initial_rank1": 0.317}
    for seed in range(3):
        _write(grid, "market", "t2-scc", seed, 0.6, 0.8, miou=0.5)
        _write(grid, "market", "t2-space", seed, 0.6, 0.8)
    for seed in range(3):  # t2-space: seed 2 from other weights
        other = {"num_clusters": 219, "cluster_nmi": 0.7923} if seed == 2 else {}
        _rewrite(grid, "t2-space", seed, start={**runner.start_state([rec]), **other})
    lines = report.start_state_lines(stats.load_results(grid))
    assert lines[0].startswith("- **Start state differs** in 1 of 2 experiments")
    assert lines[1:] == ["  - `market/t2-space`: seed 0: 194 clusters, NMI 0.7787, seed 1: 194 clusters, NMI 0.7787, "
                         "seed 2: 219 clusters, NMI 0.7923"]
    _rewrite(grid, "t2-space", 2, start=runner.start_state([rec]))
    text = report.build_report(grid, tmp_path / "R.md", tmp_path / "plots")
    assert "- Start state: in all 2 experiments with two or more seeds, every seed's epoch-0 clustering is " \
           "identical" in text


def test_initial_weights_are_identified_by_hash_and_mixtures_flagged(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights" * 300_000)  # > 1 MiB: several chunks
    exp = reg.BY_NAME["t1-wm-scc"]
    cfg = runner.run_config("synthetic", "market", exp, 0, tmp_path, {"model.weights": str(ckpt)})
    rec = runner.initial_weights(cfg)
    assert rec is not None and rec["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    for weights in ("imagenet", str(tmp_path / "missing.pt")):
        cfg = runner.run_config("synthetic", "market", exp, 0, tmp_path, {"model.weights": weights})
        assert runner.initial_weights(cfg) is None
    grid = tmp_path / "runs.jsonl"
    for seed in range(3):
        _write(grid, "market", "t2-scc", seed, 0.6, 0.8)
    assert report.init_weights_lines(stats.load_results(grid)) == []  # nothing recorded: no claim
    for seed, sha in ((0, "a" * 64), (1, "a" * 64), (2, None)):
        _rewrite(grid, "t2-scc", seed, init_weights={"path": "data/pretrained/x.pt", "sha256": sha} if sha else None)
    lines = report.init_weights_lines(stats.load_results(grid))
    assert lines == ["- Initial weights: all 2 recorded runs began from `data/pretrained/x.pt`, SHA-256 "
                     "`aaaaaaaaaaaaaaaa`; 1 run made before the record did not keep it."]
    _rewrite(grid, "t2-scc", 2, init_weights={"path": "data/pretrained/x.pt", "sha256": "b" * 64})
    lines = report.init_weights_lines(stats.load_results(grid))
    assert lines[0].startswith("- **Initial weights differ**: the runs began from 2 different files")
    assert lines[1:] == ["  - `data/pretrained/x.pt`, SHA-256 `aaaaaaaaaaaaaaaa`: 2 runs",
                         "  - `data/pretrained/x.pt`, SHA-256 `bbbbbbbbbbbbbbbb`: 1 run"]
    assert "Initial weights differ" in report.build_report(grid, tmp_path / "R.md", tmp_path / "plots")


def test_report_only_selected_groups_and_targets(tmp_path: Path) -> None:
    grid = tmp_path / "mine.jsonl"
    for seed in range(2):
        _write(grid, "market", "eta-1", seed, 0.20, 0.25, miou=0.06)
        _write(grid, "market", "t1-wm-scc", seed, 0.17, 0.20, miou=0.06)
    out = tmp_path / "R.md"
    argv = ["report", "--grid", "mine", "--results-dir", str(tmp_path), "--out", str(out),
            "--plots-dir", str(tmp_path / "plots")]
    assert cli.main(argv) == 0
    full = out.read_text()
    assert f"## {reg.GROUPS['table1']}" in full and "(`msmt`)" in full  # default: everything, "not run" rows
    assert "Findings (hand-written)" not in full  # an unregistered grid has no note
    assert cli.main([*argv, "--only", "eta", "--targets", "market"]) == 0
    text = out.read_text()
    assert f"## {reg.GROUPS['eta']}" in text and f"## {reg.GROUPS['parts']}" not in text
    assert f"## {reg.GROUPS['table1']}" not in text and "(`msmt`)" not in text
    assert "| 2 | 20.0 ± 0.0 |" in text  # eta = 1, both seeds
    with pytest.raises(SystemExit):
        cli.main([*argv, "--only", "table9"])
    with pytest.raises(ValueError, match="unknown group"):
        report.build_report(grid, out, tmp_path / "plots", groups=["table9"])


def test_report_pairs_the_far_pairs_sweep_with_the_eta_sweep(tmp_path: Path) -> None:
    """Each eta_feature point is set against the eta point of the same value (mean, sd, spread test)."""
    grid = tmp_path / "runs.jsonl"
    for seed, (feat, const) in enumerate([(0.10, 0.05), (0.12, 0.06), (0.11, 0.07)]):
        _write(grid, "msmt", "eta-1-feature", seed, feat, 0.2, miou=0.06)
        _write(grid, "msmt", "eta-1", seed, const, 0.2, miou=0.05)
        _write(grid, "msmt", "eta-3-feature", seed, 0.08 + 0.01 * seed, 0.2, miou=0.07)
        _write(grid, "msmt", "eta-3", seed, 0.085 + 0.01 * seed, 0.2, miou=0.07)
    _write(grid, "msmt", "eta-2-feature", 0, 0.09, 0.2, miou=0.06)
    out = tmp_path / "R.md"
    report.build_report(grid, out, tmp_path / "plots", None, groups=["eta_feature"], targets=["msmt"])
    text = out.read_text()
    assert ("eta = 1, far pairs by feature vs eta = 1: 11.0 ± 1.0 vs 6.0 ± 1.0, difference +5.0 "
            "(outside the spread)") in text
    assert "eta = 3, far pairs by feature vs eta = 3: 9.0 ± 1.0 vs 9.5 ± 1.0, difference -0.5 (difference " \
           "inside the spread)" in text
    assert "eta = 2, far pairs by feature vs eta = 2: eta = 2 not run" in text
    assert (tmp_path / "plots" / "fig5_eta_feature.png").is_file()
    assert stats.paired_lines("eta", "msmt", {}, {}) == []  # only the paired sweeps get these lines


def test_summary_is_one_table_of_claims(tmp_path: Path, monkeypatch) -> None:
    """docs/RESULTS.md: one row per claim and target, with the command, both figures and the verdict."""
    monkeypatch.setattr(report, "DOCS", tmp_path / "docs")
    monkeypatch.setattr(reg, "GRIDS", {"g": reg.Grid("g", "a test grid", "n.md", groups=("table3",),
                                                     targets=("market",))})
    monkeypatch.setattr(report, "GRIDS", reg.GRIDS)
    grid = tmp_path / "res" / "g.jsonl"
    for seed in range(2):
        _write(grid, "market", "t3-weighted", seed, 0.5 + 0.1 * seed, 0.6, extra=["--run.precision", "bf16"])
        _write(grid, "market", "t3-average", seed, 0.3, 0.4, extra=["--run.precision", "bf16"])
    out = tmp_path / "docs" / "RESULTS.md"
    text = report.build_summary(["g"], tmp_path / "res", out)
    rows = [line for line in text.splitlines() if line.startswith("| weighted update > average update")]
    assert len(rows) == 1
    assert ("| `market` | `python -m experiments run --grid g --targets market --seeds 0 1 --only t3-weighted "
            "t3-average` | 55.0 ± 7.1 vs 30.0 ± 0.0 (n = 2) | paper 87.5 vs 87.2 | yes | ") in rows[0]
    assert "`--extra \"--run.precision bf16\"`" in text
    monkeypatch.setitem(reg.GRIDS, "empty", reg.Grid("empty", "a grid not run", "n.md"))
    text = report.build_summary(["g", "empty"], tmp_path / "res", out)
    assert "- `empty`: a grid not run; no runs yet; " in text  # not an empty `--extra ""`

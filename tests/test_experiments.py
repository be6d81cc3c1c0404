"""Tests of the experiment harness: the experiment table, a tiny resumable run, and the report."""

from __future__ import annotations

import importlib
import json
import math
import os
import shlex
from pathlib import Path

import pytest

from training.config import config_from_args

ROOT = Path(__file__).resolve().parents[1]
ex = importlib.import_module("benchmarks.experiments")


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(text)
    except ValueError:
        return text


@pytest.mark.parametrize("target", ["market", "msmt"])
@pytest.mark.parametrize("exp", ex.EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_parses_to_its_flags(exp: ex.Experiment, target: str) -> None:
    argv = ["--preset", "synthetic", *ex.TARGETS[target], *exp.flags]
    cfg, _ = config_from_args(argv)
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    for flag, text in pairs.items():
        if flag == "--preset":
            continue
        section, name = flag.removeprefix("--").split(".")
        got = getattr(getattr(cfg, section), name)
        want = _value(text)
        assert (float(got) if isinstance(want, float) else got) == want, (exp.name, flag)


def test_intended_field_values() -> None:
    def cfg(name: str, target: str = "market"):
        return config_from_args(["--preset", "synthetic", *ex.TARGETS[target], *ex.BY_NAME[name].flags])[0]

    base = cfg("t1-baseline")
    assert (base.cluster.part_source, base.loss.wnce, base.loss.separation) == ("stripes", False, False)
    full = cfg("t1-wm-scc", "msmt")
    assert (full.cluster.part_source, full.loss.memory_update, full.loss.diversity) == ("scc", "weighted", True)
    assert (full.cluster.eps, full.model.num_parts, full.data.synthetic_preset) == (0.45, 7, "msmt")
    assert cfg("t1-wm-parsing").loss.diversity is False
    cc = cfg("peer-cluster-contrast")
    assert cc.cluster.part_source == "none" and not cc.loss.part_nce and not cc.loss.weighted_nce
    assert cc.loss.memory_update == "hardest" and not cc.loss.part_classification
    assert cfg("peer-supervised").cluster.supervised and cfg("peer-wnce-literal").loss.wnce_literal
    assert cfg("peer-diversity-sum").loss.diversity_sum and not cfg("t1-wm-scc").loss.diversity_sum
    assert cfg("parts-6", "msmt").model.num_parts == 6 and cfg("eta-1").cluster.eta == 1.0
    assert cfg("eta-1").cluster.far_pairs == "constant"
    assert (cfg("eta-1-feature").cluster.eta, cfg("eta-1-feature").cluster.far_pairs) == (1.0, "feature")
    assert {e.group for e in ex.EXPERIMENTS} == set(ex.GROUPS)
    for claims in ex.CLAIMS.values():
        assert all(c.a in ex.BY_NAME and c.b in ex.BY_NAME for c in claims)


def test_plan_aliases_identical_configs(tmp_path: Path) -> None:
    jobs = {j.key: j for j in ex.plan("synthetic", ["market", "msmt"], [0], None, [], tmp_path)}
    canon = jobs["market/t1-wm-scc/seed0"]
    assert canon.canonical is None
    for name in ("t2-scc", "t3-weighted", "eta-3", "parts-4", "peer-scwm"):
        assert jobs[f"market/{name}/seed0"].canonical is canon
    assert jobs["market/parts-7/seed0"].canonical is None
    assert jobs["msmt/parts-7/seed0"].canonical is jobs["msmt/t1-wm-scc/seed0"]
    assert jobs["market/t1-baseline/seed0"].out == tmp_path / "market" / "t1-baseline" / "seed0"
    with pytest.raises(ValueError, match="unknown experiment"):
        ex.plan("synthetic", ["market"], [0], ["table9"], [], tmp_path)


def test_run_writes_result_then_skips(tmp_path: Path, monkeypatch, capsys) -> None:
    results = tmp_path / "runs"
    extra = shlex.join([
        "--data.root", str(tmp_path / "tiny-seed0"), "--pretrain.root", str(tmp_path / "tiny-seed1"),
        "--pretrain.checkpoint", str(tmp_path / "pre.pt"), "--pretrain.iters", "2", "--pretrain.batch_size", "8",
        "--data.height", "64", "--data.width", "32", "--optim.batch_size", "8", "--optim.num_instances", "2",
        "--optim.iters", "2", "--optim.epochs", "1",
    ])
    argv = ["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "--only", "t1-wm-scc", "t3-weighted",
            "--extra", extra, "--results-dir", str(results)]
    assert ex.main(argv) == 0
    assert "tiny/t1-wm-scc/seed0: training ->" in capsys.readouterr().out
    out = results / "tiny" / "t1-wm-scc" / "seed0"
    res = json.loads((out / "result.json").read_text())
    assert set(res["final"]) == {"mAP", "rank1", "rank5", "rank10", "mINP"}
    assert res["seed"] == 0 and res["target"] == "tiny" and res["epochs"] == 1
    assert res["argv"][res["argv"].index("--run.output") + 1] == str(out)
    assert "pseudo_mask_miou" in res["last_epoch"] and "pseudo_mask_fg_iou" in res["last_epoch"]
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert res["start"] == {k: first[k] for k in ex.START_KEYS}
    import hashlib
    assert res["init_weights"]["sha256"] == hashlib.sha256((tmp_path / "pre.pt").read_bytes()).hexdigest()
    assert Path(res["init_weights"]["path"]).resolve() == (tmp_path / "pre.pt").resolve()
    assert Path(ex.ROOT / res["metrics"]).is_file() or Path(res["metrics"]).is_file()
    alias = json.loads((results / "tiny" / "t3-weighted" / "seed0" / "result.json").read_text())
    assert alias["alias_of"] == "tiny/t1-wm-scc/seed0" and alias["final"] == res["final"]
    assert not (results / "tiny" / "t3-weighted" / "seed0" / "checkpoint.pt").exists()
    before = (out / "result.json").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was launched again")

    monkeypatch.setattr(ex, "_launch", no_training)
    capsys.readouterr()
    assert ex.main(argv) == 0
    assert "done, skipped" in capsys.readouterr().out
    assert (out / "result.json").stat().st_mtime_ns == before
    assert ex.main([*argv, "--extra", "--optim.iters 3"]) == 0  # other budget: kept, with a warning
    assert "recorded with a different config" in capsys.readouterr().out


def test_interrupted_run_is_resumed_with_same_output(tmp_path: Path, monkeypatch) -> None:
    job = ex.plan("smoke", ["tiny"], [1], ["t3-average"], [], tmp_path)[0]
    job.out.mkdir(parents=True)
    (job.out / "checkpoint.pt").write_bytes(b"x")
    assert ex.status(job) == "resume"
    launched: list[list[str]] = []
    monkeypatch.setattr(ex, "_launch", lambda cmd, log: launched.append(cmd) or 3)
    assert ex.execute(job, "python") is None  # failure is reported, not raised
    assert launched[0][launched[0].index("--run.output") + 1] == str(job.out)
    assert not job.result_path.exists() and not (job.out / ".harness.lock").exists()


def test_run_locked_by_another_harness_is_left_to_it(tmp_path: Path, monkeypatch, capsys) -> None:
    results = tmp_path / "res"
    argv = ["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "--only", "t3-average",
            "--results-dir", str(results)]
    job = ex.plan("smoke", ["tiny"], [0], ["t3-average"], [], results)[0]
    job.out.mkdir(parents=True)
    (job.out / ".harness.lock").write_text(str(os.getppid()))  # a live process other than this one

    def no_training(*args, **kwargs):
        raise AssertionError("a locked run was launched")

    monkeypatch.setattr(ex, "_launch", no_training)
    with pytest.raises(ex.Locked):
        ex.execute(job, "python")
    assert ex.main(argv) == 0
    out = capsys.readouterr().out
    assert "locked by another harness process" in out and "0 failed, 1 left to other harness" in out
    assert "training ->" not in out  # only the process holding the lock announces the run
    assert (job.out / ".harness.lock").read_text() == str(os.getppid())  # the owner's lock is untouched


def _write(results: Path, target: str, exp: str, seed: int, mAP: float, r1: float, miou: float | None = None,
           ) -> None:
    last = {"epoch": 3} if miou is None else {"epoch": 3, "pseudo_mask_miou": miou, "pseudo_mask_fg_iou": 0.8}
    d = results / target / exp / f"seed{seed}"
    d.mkdir(parents=True)
    argv = ex.build_argv("synthetic", target, ex.BY_NAME[exp], seed, d, [])
    metrics = d / "metrics.jsonl"
    if miou is not None:  # two clustering stages, the last one equal to the final figures
        metrics.write_text("".join(json.dumps({"epoch": e, "pseudo_mask_miou": v, "pseudo_mask_fg_iou": 0.8,
                                               "cluster_nmi": 0.5, "num_clusters": 10, "cluster_ari": 0.3}) + "\n"
                                   for e, v in ((0, miou / 2), (1, miou))))
    (d / "result.json").write_text(json.dumps({
        "experiment": exp, "target": target, "seed": seed, "preset": "synthetic", "extra": [], "argv": argv,
        "fingerprint": ex.fingerprint(argv), "final": {"mAP": mAP, "rank1": r1}, "last_epoch": last,
        "metrics": str(metrics)}))


def test_report_stats_verdicts_and_missing(tmp_path: Path) -> None:
    results = tmp_path / "runs"
    for seed, (scc, cas, space) in enumerate([(0.60, 0.40, 0.58), (0.62, 0.42, 0.55), (0.64, 0.44, 0.61)]):
        _write(results, "market", "t2-scc", seed, scc, 0.8, miou=0.5 + 0.1 * seed)
        _write(results, "market", "t2-cascaded", seed, cas, 0.7, miou=0.3)
        _write(results, "market", "t2-space", seed, space, 0.75, miou=0.4)
    _write(results, "market", "eta-1", 0, 0.5, 0.7)
    _write(results, "market", "eta-3", 0, 0.6, 0.8)
    stat = ex.mean_sd([0.60, 0.62, 0.64])
    assert stat is not None and stat.n == 3
    assert stat.mean == pytest.approx(0.62) and stat.sd == pytest.approx(0.02)
    assert ex.mean_sd([0.5]).sd is None and ex.mean_sd([]) is None
    space = ex.mean_sd([0.58, 0.55, 0.61])
    assert space.sd == pytest.approx(math.sqrt(((0.58 - 0.58) ** 2 + 0.03 ** 2 + 0.03 ** 2) / 2))

    md_path = tmp_path / "docs" / "RESULTS.md"
    analysis = tmp_path / "ANALYSIS.md"
    analysis.write_text("## Findings\n\nSCC beats cascaded here.\n")
    text = ex.build_report(results, md_path, tmp_path / "docs" / "results", analysis)
    assert md_path.read_text() == text
    assert text.index("## Setup") < text.index("## Findings\n\nSCC beats cascaded here.") < text.index("## Table 1")
    plots = tmp_path / "docs" / "results"
    assert (plots / "table2.png").read_bytes()[:4] == b"\x89PNG" and "results/table2.png" in text
    assert (plots / "table2_market_epochs.png").read_bytes()[:4] == b"\x89PNG"
    assert not (plots / "table2_msmt_epochs.png").exists()  # nothing ran on msmt
    curve = ex._epoch_curves([json.loads((results / "market" / "t2-scc" / f"seed{k}" / "result.json").read_text())
                              for k in range(3)], "pseudo_mask_miou")
    assert curve == pytest.approx([0.3, 0.6])  # mean over seeds of (0.25, 0.3, 0.35) and (0.5, 0.6, 0.7)
    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    market = table2.split("### MSMT17")[0]
    assert "| both corrections (SCC) | 3 | 62.0 ± 2.0 | 80.0 ± 0.0 | 87.5 | 94.9 | 60.0 ± 10.0 | 80.0 ± 0.0 |" in market
    assert "| foreground correction | 0 | not run | not run | 86.9 | 95.1 | not run | not run |" in market
    assert ("both corrections (SCC) > cascaded clustering (paper 87.5 vs 86.2): yes — ours 62.0 vs 42.0"
            in market)
    assert ("both corrections (SCC) > space correction (paper 87.5 vs 86.5): yes (difference inside the spread)"
            in market)
    assert "both corrections (SCC) > foreground correction (paper 87.5 vs 86.9): not run" in market
    msmt = table2.split("### MSMT17")[1]
    assert "space correction > both corrections (SCC) (paper 49.3 vs 49.1): not run" in msmt
    assert "not run" in text.split("## Table 1")[1].split("## Table 2")[0]
    # Table 3 "weighted" has the same config as t2-scc: reported from those runs, marked as shared.
    assert "| weighted update ‡ | 3 | 62.0 ± 2.0 |" in text.split("## Table 3")[1]
    assert "`market`: 11 trained run(s), seeds [0, 1, 2]" in text
    assert (tmp_path / "docs" / "results" / "fig5_eta.png").read_bytes()[:4] == b"\x89PNG"
    assert "![" in text and "results/fig5_eta.png" in text
    parts = text.split("## Fig. 5 (right)")[1].split("## Peers")[0]
    assert "| l = 4 ‡ | 3 | 62.0 ± 2.0 |" in parts and "not run (fewer than 2 values)" in parts
    eta = text.split("## Fig. 5 (left)")[1].split("## Fig. 5 (right)")[0]
    assert "interior optimum): yes — ours best eta = 3 (62.0) of 2 values run" in eta.split("### MSMT17")[0]


def test_verdict_single_seed_and_reversed(tmp_path: Path) -> None:
    stats = {"t3-weighted": ex.mean_sd([0.5]), "t3-average": ex.mean_sd([0.6])}
    v = ex.verdict(ex.Claim("t3-weighted", "t3-average"), "market", stats)
    assert v.startswith("weighted update > average update (paper 87.5 vs 87.2): no (single seed, spread unknown)")
    stats = {"t3-weighted": ex.mean_sd([0.5, 0.7]), "t3-average": ex.mean_sd([0.3, 0.31])}
    v = ex.verdict(ex.Claim("t3-weighted", "t3-average"), "market", stats)
    assert v.endswith("yes — ours 60.0 vs 30.5")


def test_jobs_launch_workers_sharing_the_queue(tmp_path: Path, monkeypatch) -> None:
    launched: list[tuple[list[str], dict]] = []

    class FakeProc:
        def __init__(self, cmd, cwd, env) -> None:
            launched.append((cmd, env))

        def wait(self) -> int:
            return len(launched) - 1  # second worker "fails": the harness reports the worst exit code

    monkeypatch.setattr(ex.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(ex.time, "sleep", lambda s: None)
    monkeypatch.setattr(ex.os, "cpu_count", lambda: 4)
    rc = ex.main(["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "1", "--only", "table3",
                  "--extra", "--optim.iters 3", "--results-dir", str(tmp_path), "--jobs", "2"])
    assert rc == 1 and len(launched) == 2
    cmd, env = launched[0]
    assert cmd[cmd.index("--jobs") + 1] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert cmd[cmd.index("--seeds") + 1: cmd.index("--seeds") + 3] == ["0", "1"]
    assert cmd[cmd.index("--only") + 1] == "table3" and cmd[cmd.index("--extra") + 1] == "--optim.iters 3"
    assert ex.build_parser().parse_args(cmd[3:]).jobs == 1  # the workers' command line parses
    with pytest.raises(SystemExit, match="--jobs"):
        ex.main(["run", "--jobs", "0", "--results-dir", str(tmp_path)])


def test_fingerprint_ignores_added_fields_at_their_old_value(tmp_path) -> None:
    """A field added after runs were recorded keeps their fingerprints while it holds the old value."""
    argv = ex.build_argv("synthetic", "market", ex.BY_NAME["t1-wm-scc"], 0, tmp_path / "r", [])
    base = ex.fingerprint(argv)
    assert ("loss", "diversity_sum") in ex.ADDED_FIELDS
    assert ex.fingerprint([*argv, "--loss.diversity_sum", "false"]) == base
    assert ex.fingerprint([*argv, "--loss.diversity_sum", "true"]) != base
    assert ex.fingerprint([*argv, "--cluster.far_pairs", "constant"]) == base
    assert ex.fingerprint([*argv, "--cluster.far_pairs", "feature"]) != base
    assert ex.fingerprint([*argv, "--loss.diversity", "false"]) != base  # ordinary fields still count


def test_start_state_check_flags_seeds_that_began_elsewhere(tmp_path: Path) -> None:
    results = tmp_path / "runs"
    rec = {"epoch": 0, "num_clusters": 194, "cluster_nmi": 0.7787, "cluster_ari": 0.2228, "lr": 1e-3}
    assert ex.start_state([rec, {**rec, "epoch": 1}]) == {"num_clusters": 194, "cluster_nmi": 0.7787,
                                                          "cluster_ari": 0.2228}
    assert ex.start_state([{**rec, "epoch": 1}]) is None and ex.start_state([]) is None
    for seed in range(3):
        _write(results, "market", "t2-scc", seed, 0.6, 0.8, miou=0.5)
        _write(results, "market", "t2-space", seed, 0.6, 0.8)
    # t2-scc: no "start" in result.json, read from metrics.jsonl (all seeds alike, cluster_nmi 0.5)
    for seed in range(3):  # t2-space: recorded starts, seed 2 from other weights
        path = results / "market" / "t2-space" / f"seed{seed}" / "result.json"
        res = json.loads(path.read_text())
        other = {"num_clusters": 219, "cluster_nmi": 0.7923} if seed == 2 else {}
        res["start"] = {**ex.start_state([rec]), **other}
        path.write_text(json.dumps(res))
    lines = ex.start_state_lines(ex.load_results(results))
    assert lines[0].startswith("- **Start state differs** in 1 of 2 experiments")
    assert lines[1:] == ["  - `market/t2-space`: seed 0: 194 clusters, NMI 0.7787, seed 1: 194 clusters, NMI 0.7787, "
                         "seed 2: 219 clusters, NMI 0.7923"]
    res["start"] = ex.start_state([rec])
    path.write_text(json.dumps(res))
    text = ex.build_report(results, tmp_path / "R.md", tmp_path / "plots")
    assert "- Start state: in all 2 experiments with two or more seeds, every seed's epoch-0 clustering is " \
           "identical" in text


def test_initial_weights_are_identified_by_hash_and_mixtures_flagged(tmp_path: Path) -> None:
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights" * 300_000)  # > 1 MiB: several chunks
    import hashlib
    rec = ex.initial_weights(["--model.weights", str(ckpt)])
    assert rec is not None and rec["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert ex.initial_weights(["--model.weights", "imagenet"]) is None
    assert ex.initial_weights(["--model.weights", str(tmp_path / "missing.pt")]) is None
    results = tmp_path / "runs"
    for seed in range(3):
        _write(results, "market", "t2-scc", seed, 0.6, 0.8)
    assert ex.init_weights_lines(ex.load_results(results)) == []  # nothing recorded: no claim
    for seed, sha in ((0, "a" * 64), (1, "a" * 64), (2, None)):
        path = results / "market" / "t2-scc" / f"seed{seed}" / "result.json"
        res = json.loads(path.read_text())
        res["init_weights"] = {"path": "data/pretrained/x.pt", "sha256": sha} if sha else None
        path.write_text(json.dumps(res))
    lines = ex.init_weights_lines(ex.load_results(results))
    assert lines == ["- Initial weights: all 2 recorded runs began from `data/pretrained/x.pt`, SHA-256 "
                     "`aaaaaaaaaaaaaaaa`; 1 run made before the record did not keep it."]
    res["init_weights"] = {"path": "data/pretrained/x.pt", "sha256": "b" * 64}
    path.write_text(json.dumps(res))
    lines = ex.init_weights_lines(ex.load_results(results))
    assert lines[0].startswith("- **Initial weights differ**: the runs began from 2 different files")
    assert lines[1:] == ["  - `data/pretrained/x.pt`, SHA-256 `aaaaaaaaaaaaaaaa`: 2 runs",
                         "  - `data/pretrained/x.pt`, SHA-256 `bbbbbbbbbbbbbbbb`: 1 run"]
    assert "Initial weights differ" in ex.build_report(results, tmp_path / "R.md", tmp_path / "plots")


def test_report_only_selected_groups_and_targets(tmp_path: Path) -> None:
    results = tmp_path / "runs"
    for seed in range(2):
        _write(results, "market", "eta-1", seed, 0.20, 0.25, miou=0.06)
        _write(results, "market", "t1-wm-scc", seed, 0.17, 0.20, miou=0.06)
    out = tmp_path / "R.md"
    argv = ["report", "--results-dir", str(results), "--out", str(out), "--plots-dir", str(tmp_path / "plots"),
            "--analysis", ""]
    assert ex.main(argv) == 0
    full = out.read_text()
    assert f"## {ex.GROUPS['table1']}" in full and "(`msmt`)" in full  # default: everything, "not run" rows
    assert ex.main([*argv, "--only", "eta", "--targets", "market"]) == 0
    text = out.read_text()
    assert f"## {ex.GROUPS['eta']}" in text and f"## {ex.GROUPS['parts']}" not in text
    assert f"## {ex.GROUPS['table1']}" not in text and "(`msmt`)" not in text
    assert "| 2 | 20.0 ± 0.0 |" in text  # eta = 1, both seeds
    with pytest.raises(SystemExit):
        ex.main([*argv, "--only", "table9"])
    with pytest.raises(ValueError, match="unknown group"):
        ex.build_report(results, out, tmp_path / "plots", groups=["table9"])


def test_report_pairs_the_far_pairs_sweep_with_the_eta_sweep(tmp_path: Path) -> None:
    """Each eta_feature point is set against the eta point of the same value (mean, sd, spread test)."""
    results = tmp_path / "runs"
    for seed, (feat, const) in enumerate([(0.10, 0.05), (0.12, 0.06), (0.11, 0.07)]):
        _write(results, "msmt", "eta-1-feature", seed, feat, 0.2, miou=0.06)
        _write(results, "msmt", "eta-1", seed, const, 0.2, miou=0.05)
        _write(results, "msmt", "eta-3-feature", seed, 0.08 + 0.01 * seed, 0.2, miou=0.07)
        _write(results, "msmt", "eta-3", seed, 0.085 + 0.01 * seed, 0.2, miou=0.07)
    _write(results, "msmt", "eta-2-feature", 0, 0.09, 0.2, miou=0.06)
    out = tmp_path / "R.md"
    ex.build_report(results, out, tmp_path / "plots", None, groups=["eta_feature"], targets=["msmt"])
    text = out.read_text()
    assert ("eta = 1, far pairs by feature vs eta = 1: 11.0 ± 1.0 vs 6.0 ± 1.0, difference +5.0 "
            "(outside the spread)") in text
    assert "eta = 3, far pairs by feature vs eta = 3: 9.0 ± 1.0 vs 9.5 ± 1.0, difference -0.5 (difference " \
           "inside the spread)" in text
    assert "eta = 2, far pairs by feature vs eta = 2: eta = 2 not run" in text
    assert (tmp_path / "plots" / "fig5_eta_feature.png").is_file()
    assert ex._paired_lines("eta", "msmt", {}, {}) == []  # only the paired sweeps get these lines


def test_run_warns_about_emulated_bf16(tmp_path: Path, monkeypatch, capsys) -> None:
    import training.common as common

    argv = ["run", "--targets", "tiny", "--seeds", "0", "--only", "t1-baseline", "--dry-run",
            "--results-dir", str(tmp_path / "runs"), "--extra", "--run.device cpu"]
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: False)
    assert ex.main([*argv, "--extra", "--run.precision bf16"]) == 0
    assert "warning: --run.precision bf16" in capsys.readouterr().out
    assert ex.main(argv) == 0  # fp32: no warning
    assert "warning: --run.precision bf16" not in capsys.readouterr().out
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: True)
    assert ex.main([*argv, "--extra", "--run.precision bf16"]) == 0
    assert "warning: --run.precision bf16" not in capsys.readouterr().out

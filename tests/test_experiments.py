"""Tests of the experiment harness: the experiment table, planning, locking, and the reports."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import experiments.__main__ as cli
from experiments import registry as reg
from experiments import report, runner, stats
from training.cli import config_from_args
from training.config import PRESETS, preset_config


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(text)
    except ValueError:
        return text


def _cfg(name: str, target: str = "market"):
    return runner.run_config("synthetic", target, reg.BY_NAME[name], 0, Path("r"), {})


@pytest.mark.parametrize("target", ["market", "msmt"])
@pytest.mark.parametrize("exp", reg.EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_parses_to_its_flags(exp: reg.Experiment, target: str) -> None:
    """The subprocess's flags and the harness's config (preset_config) are the same training."""
    argv = runner.build_argv("synthetic", target, exp, 0, Path("r"), [])
    cfg, _ = config_from_args(argv)
    assert cfg == _cfg(exp.name, target)
    pairs = dict(zip(argv[::2], argv[1::2], strict=True))
    for flag, text in pairs.items():
        if flag == "--preset":
            continue
        section, name = flag.removeprefix("--").split(".")
        got = getattr(getattr(cfg, section), name)
        want = _value(text)
        assert (float(got) if isinstance(want, float) else got) == want, (exp.name, flag)


def test_intended_field_values() -> None:
    base = _cfg("t1-baseline")
    assert (base.cluster.part_source, base.loss.nce, base.loss.separation) == ("stripes", False, False)
    full = _cfg("t1-wm-scc", "msmt")
    assert (full.cluster.part_source, full.loss.memory_update, full.loss.diversity) == ("scc", "weighted", True)
    assert (full.cluster.eps, full.model.num_parts, full.data.synthetic_preset) == (0.45, 7, "msmt")
    assert _cfg("t1-wm-parsing").loss.diversity is False
    cc = _cfg("peer-cluster-contrast")
    assert cc.cluster.part_source == "none" and not cc.loss.nce_parts and not cc.loss.nce_weighted
    assert cc.loss.memory_update == "hardest" and not cc.loss.part_classification
    assert _cfg("peer-supervised").cluster.supervised and _cfg("peer-wnce-literal").loss.nce_literal
    assert _cfg("peer-diversity-sum").loss.diversity_sum and not _cfg("t1-wm-scc").loss.diversity_sum
    assert _cfg("parts-6", "msmt").model.num_parts == 6 and _cfg("eta-1").cluster.eta == 1.0
    assert _cfg("eta-1").cluster.far_pairs == "constant"
    assert (_cfg("eta-1-feature").cluster.eta, _cfg("eta-1-feature").cluster.far_pairs) == (1.0, "feature")
    assert {e.group for e in reg.EXPERIMENTS} == set(reg.GROUPS)
    for claims in reg.CLAIMS.values():
        assert all(c.a in reg.BY_NAME and c.b in reg.BY_NAME for c in claims)
    assert runner.flags({"cluster.eta": 1.0, "loss.nce": False, "model.num_parts": 4}) == [
        "--cluster.eta", "1", "--loss.nce", "false", "--model.num_parts", "4"]


def test_rows_pin_the_paper_classification_loss() -> None:
    """The synthetic preset leaves out Eq. 15's classifiers; the paper's rows (and SCWM + triplet) keep them,
    the global-only peers and the row named for it leave them out, and the subprocess flags say the same."""
    assert not preset_config("synthetic").loss.part_classification
    for name in ("t1-baseline", "t1-wm-scc", "t2-scc", "t3-weighted", "eta-1", "triplet-scwm", "triplet-scwm-beta1"):
        assert _cfg(name).loss.part_classification is True, name
        argv = runner.build_argv("synthetic", "market", reg.BY_NAME[name], 0, Path("r"), [])
        assert config_from_args(argv)[0].loss.part_classification is True, name
    for name in ("peer-cluster-contrast", "triplet-cluster-contrast", "triplet-scwm-no-part-classification"):
        assert _cfg(name).loss.part_classification is False, name
    assert (_cfg("triplet-scwm-id-global").loss.id_terms, _cfg("triplet-scwm-id-parts").loss.id_terms) == (
        "global", "parts")


def test_rows_pin_the_soft_triplet_whatever_the_preset(monkeypatch) -> None:
    """The paper's rows train without PPLR's soft triplet even when the preset turns it on; rows named for it
    keep it, and the flags the subprocess gets say the same."""
    on = {**PRESETS["synthetic"], "loss": {**PRESETS["synthetic"].get("loss", {}), "soft_triplet": True}}
    monkeypatch.setitem(PRESETS, "synthetic", on)
    assert preset_config("synthetic").loss.soft_triplet
    for name in ("t1-baseline", "t1-wm-scc", "t2-oracle", "peer-cluster-contrast", "eta-1"):
        assert _cfg(name).loss.soft_triplet is False, name
        argv = runner.build_argv("synthetic", "market", reg.BY_NAME[name], 0, Path("r"), [])
        assert config_from_args(argv)[0].loss.soft_triplet is False, name
    for name in ("t1-pplr", "triplet-scwm", "triplet-cluster-contrast"):
        assert _cfg(name).loss.soft_triplet is True, name
    # the grid of the current defaults stays current: its runs resolve to the fingerprints they recorded
    records = runner.read_records(runner.RESULTS_DIR / "plip.jsonl")
    checked = 0
    for r in records:
        if r.get("experiment") in ("t1-baseline", "t1-wm-scc", "triplet-scwm", "triplet-cluster-contrast") \
                and not r.get("alias_of"):
            cfg = runner.run_config(r["preset"], r["target"], reg.BY_NAME[r["experiment"]], int(r["seed"]),
                                    Path("r"), runner.extra_overrides(r["extra"]))
            assert cfg.fingerprint() == r["fingerprint"], (r["target"], r["experiment"], r["seed"])
            checked += 1
    assert checked >= 8


def test_plan_aliases_identical_configs(tmp_path: Path) -> None:
    jobs = {j.key: j for j in runner.plan("synthetic", ["market", "msmt"], [0], None, [], tmp_path)}
    canon = jobs["market/t1-wm-scc/seed0"]
    assert canon.canonical is None
    for name in ("t2-scc", "t3-weighted", "eta-3", "parts-4", "peer-scwm"):
        assert jobs[f"market/{name}/seed0"].canonical is canon
    assert jobs["market/parts-7/seed0"].canonical is None
    assert jobs["msmt/parts-7/seed0"].canonical is jobs["msmt/t1-wm-scc/seed0"]
    assert jobs["market/t1-baseline/seed0"].out == tmp_path / "market" / "t1-baseline" / "seed0"
    with pytest.raises(ValueError, match="unknown experiment"):
        runner.plan("synthetic", ["market"], [0], ["table9"], [], tmp_path)
    with pytest.raises(ValueError, match="invalid training flags"):
        runner.plan("synthetic", ["market"], [0], ["eta-1"], ["--cluster.nope", "1"], tmp_path)


def test_fingerprint_is_the_configs(tmp_path: Path) -> None:
    """The harness uses TrainConfig.fingerprint(): output and added fields at their old value do not count."""
    exp = reg.BY_NAME["t1-wm-scc"]
    base = runner.run_config("synthetic", "market", exp, 0, tmp_path / "a", {})
    assert base.fingerprint() == runner.run_config("synthetic", "market", exp, 0, tmp_path / "b", {}).fingerprint()
    for extra, same in (({"loss.diversity_sum": False}, True), ({"loss.diversity_sum": True}, False),
                        ({"cluster.far_pairs": "feature"}, False), ({"loss.diversity": False}, False)):
        cfg = runner.run_config("synthetic", "market", exp, 0, tmp_path / "a", extra)
        assert (cfg.fingerprint() == base.fingerprint()) is same, extra


def test_interrupted_run_is_resumed_with_same_output(tmp_path: Path, monkeypatch) -> None:
    job = runner.plan("smoke", ["tiny"], [1], ["t3-average"], [], tmp_path)[0]
    job.out.mkdir(parents=True)
    (job.out / "checkpoint.pt").write_bytes(b"x")
    assert runner.status(job, {}) == "resume"
    launched: list[list[str]] = []
    monkeypatch.setattr(runner, "_launch", lambda cmd, log: launched.append(cmd) or 3)
    grid = tmp_path / "g.jsonl"
    assert runner.execute(job, "python", grid) is None  # failure is reported, not raised
    assert launched[0][launched[0].index("--run.output") + 1] == str(job.out)
    assert not grid.exists() and not (job.out / ".harness.lock").exists()


def test_run_locked_by_another_harness_is_left_to_it(tmp_path: Path, monkeypatch, capsys) -> None:
    argv = ["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "--only", "t3-average",
            "--results-dir", str(tmp_path / "res"), "--runs-dir", str(tmp_path / "runs"), "--grid", "g"]
    job = runner.plan("smoke", ["tiny"], [0], ["t3-average"], [], tmp_path / "runs" / "g")[0]
    job.out.mkdir(parents=True)
    (job.out / ".harness.lock").write_text(str(os.getppid()))  # a live process other than this one

    def no_training(*args, **kwargs):
        raise AssertionError("a locked run was launched")

    monkeypatch.setattr(runner, "_launch", no_training)
    with pytest.raises(runner.Locked):
        runner.execute(job, "python", tmp_path / "res" / "g.jsonl")
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "locked by another harness process" in out and "0 failed, 1 left to other harness" in out
    assert "training ->" not in out  # only the process holding the lock announces the run
    assert (job.out / ".harness.lock").read_text() == str(os.getppid())  # the owner's lock is untouched


def test_recorded_runs_are_skipped_or_flagged_stale(tmp_path: Path, monkeypatch, capsys) -> None:
    grid = tmp_path / "g.jsonl"
    _write(grid, "tiny", "t3-average", 0, 0.5, 0.6, preset="smoke")
    argv = ["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "--only", "t3-average",
            "--results-dir", str(tmp_path), "--runs-dir", str(tmp_path / "runs"), "--grid", "g"]
    monkeypatch.setattr(runner, "_launch", lambda *a: pytest.fail("a recorded run was launched"))
    assert cli.main(argv) == 0 and "done, skipped" in capsys.readouterr().out
    assert cli.main([*argv, "--extra", "--optim.iters 3"]) == 0  # other budget: kept, with a warning
    assert "recorded with a different config" in capsys.readouterr().out
    assert cli.main([*argv, "--dry-run"]) == 0 and "[  done] tiny/t3-average/seed0" in capsys.readouterr().out


def _write(grid: Path, target: str, exp: str, seed: int, mAP: float, r1: float, miou: float | None = None,
           preset: str = "synthetic", **fields) -> None:
    """Append one recorded run to a grid file, as the runner does."""
    last = {"epoch": 3} if miou is None else {"epoch": 3, "pseudo_mask_miou": miou, "pseudo_mask_fg_iou": 0.8}
    out = Path("unused")
    cfg = runner.run_config(preset, target, reg.BY_NAME[exp], seed, out, {})
    per_epoch = [] if miou is None else [  # two clustering stages, the last one equal to the final figures
        {"epoch": e, "pseudo_mask_miou": v, "pseudo_mask_fg_iou": 0.8, "cluster_nmi": 0.5, "num_clusters": 10,
         "cluster_ari": 0.3} for e, v in ((0, miou / 2), (1, miou))]
    record = {"target": target, "experiment": exp, "seed": seed, "preset": preset, "extra": [],
              "fingerprint": cfg.fingerprint(), "final": {"mAP": mAP, "rank1": r1}, "last_epoch": last,
              "start": runner.start_state(per_epoch), "per_epoch": per_epoch, **fields}
    grid.parent.mkdir(parents=True, exist_ok=True)
    with open(grid, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def test_report_stats_verdicts_and_missing(tmp_path: Path) -> None:
    grid = tmp_path / "runs.jsonl"
    for seed, (scc, cas, space) in enumerate([(0.60, 0.40, 0.58), (0.62, 0.42, 0.55), (0.64, 0.44, 0.61)]):
        _write(grid, "market", "t2-scc", seed, scc, 0.8, miou=0.5 + 0.1 * seed)
        _write(grid, "market", "t2-cascaded", seed, cas, 0.7, miou=0.3)
        _write(grid, "market", "t2-space", seed, space, 0.75, miou=0.4)
    _write(grid, "market", "eta-1", 0, 0.5, 0.7)
    _write(grid, "market", "eta-3", 0, 0.6, 0.8)
    stat = stats.mean_sd([0.60, 0.62, 0.64])
    assert stat is not None and stat.n == 3
    assert stat.mean == pytest.approx(0.62) and stat.sd == pytest.approx(0.02)
    assert stats.mean_sd([0.5]).sd is None and stats.mean_sd([]) is None
    space = stats.mean_sd([0.58, 0.55, 0.61])
    assert space.sd == pytest.approx(math.sqrt(((0.58 - 0.58) ** 2 + 0.03 ** 2 + 0.03 ** 2) / 2))

    md_path = tmp_path / "docs" / "results" / "runs.md"
    note = tmp_path / "docs" / "notes" / "findings.md"
    text = report.build_report(grid, md_path, tmp_path / "docs" / "results" / "runs", note)
    assert md_path.read_text() == text
    assert text.index("## Setup") < text.index("Findings (hand-written): [") < text.index("## Table 1")
    assert "(../notes/findings.md)" in text
    plots = tmp_path / "docs" / "results" / "runs"
    assert (plots / "table2.png").read_bytes()[:4] == b"\x89PNG" and "](runs/table2.png)" in text
    assert (plots / "table2_market_epochs.png").read_bytes()[:4] == b"\x89PNG"
    assert not (plots / "table2_msmt_epochs.png").exists()  # nothing ran on msmt
    curve = stats.epoch_curves(stats.load_results(grid)[("market", "t2-scc")], "pseudo_mask_miou")
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
    assert (plots / "fig5_eta.png").read_bytes()[:4] == b"\x89PNG" and "](runs/fig5_eta.png)" in text
    parts = text.split("## Fig. 5 (right)")[1].split("## Peers")[0]
    assert "| l = 4 ‡ | 3 | 62.0 ± 2.0 |" in parts and "not run (fewer than 2 values)" in parts
    eta = text.split("## Fig. 5 (left)")[1].split("## Fig. 5 (right)")[0]
    assert ("interior optimum): yes (an extreme not run) — ours best eta = 3 (62.0) of 2 values run"
            in eta.split("### MSMT17")[0])


def test_judge_sweep_says_when_yes_is_inside_the_spread() -> None:
    def eta(**means_sds: tuple[float, float | None]) -> dict[str, stats.Stat | None]:
        st: dict[str, stats.Stat | None] = {e.name: None for e in reg.EXPERIMENTS if e.group == "eta"}
        for k, (m, sd) in means_sds.items():
            st[k.replace("_", "-")] = stats.Stat(m, sd, 1 if sd is None else 3)
        return st

    clear = eta(eta_1=(0.50, 0.01), eta_3=(0.60, 0.01), eta_6=(0.52, 0.01))
    assert stats.judge_sweep("eta", "market", clear).answer == "yes"
    flat = eta(eta_1=(0.58, 0.01), eta_3=(0.60, 0.02), eta_6=(0.52, 0.01))  # 0.02 < 0.01 + 0.02
    assert stats.judge_sweep("eta", "market", flat).answer == "yes (inside the spread of eta = 1)"
    single = eta(eta_1=(0.50, None), eta_3=(0.60, 0.01), eta_6=(0.52, 0.01))
    assert stats.judge_sweep("eta", "market", single).answer == "yes (single seed, spread unknown)"
    assert stats.judge_sweep("eta", "market", eta(eta_1=(0.5, 0.01), eta_3=(0.6, 0.01))).answer == (
        "yes (an extreme not run)")
    assert stats.judge_sweep("eta", "market", eta(eta_1=(0.7, 0.01), eta_3=(0.6, 0.01))).answer == "no"
    parts = {e.name: None for e in reg.EXPERIMENTS if e.group == "parts"}
    parts |= {"parts-4": stats.Stat(0.60, 0.01, 3), "parts-5": stats.Stat(0.59, 0.01, 3)}
    verdict = stats.judge_sweep("parts", "market", parts)
    assert verdict.answer == "yes (inside the spread of l = 5)" and "runner-up l = 5 within the spread" in verdict.ours
    parts["parts-5"] = stats.Stat(0.50, 0.01, 3)
    assert stats.judge_sweep("parts", "market", parts).answer == "yes"


def test_verdict_single_seed_and_reversed() -> None:
    st = {"t3-weighted": stats.mean_sd([0.5]), "t3-average": stats.mean_sd([0.6])}
    v = stats.verdict(reg.Claim("t3-weighted", "t3-average"), "market", st)
    assert v.startswith("weighted update > average update (paper 87.5 vs 87.2): no (single seed, spread unknown)")
    st = {"t3-weighted": stats.mean_sd([0.5, 0.7]), "t3-average": stats.mean_sd([0.3, 0.31])}
    v = stats.verdict(reg.Claim("t3-weighted", "t3-average"), "market", st)
    assert v.endswith("yes — ours 60.0 vs 30.5")


def test_jobs_launch_workers_sharing_the_queue(tmp_path: Path, monkeypatch) -> None:
    launched: list[tuple[list[str], dict]] = []

    class FakeProc:
        def __init__(self, cmd, cwd, env) -> None:
            launched.append((cmd, env))

        def wait(self) -> int:
            return len(launched) - 1  # second worker "fails": the harness reports the worst exit code

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProc)
    monkeypatch.setattr(cli.time, "sleep", lambda s: None)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 4)
    rc = cli.main(["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "1", "--only", "table3",
                   "--extra", "--optim.iters 3", "--results-dir", str(tmp_path), "--grid", "g", "--jobs", "2"])
    assert rc == 1 and len(launched) == 2
    cmd, env = launched[0]
    assert cmd[cmd.index("--jobs") + 1] == "1" and env["OMP_NUM_THREADS"] == "2"
    assert cmd[cmd.index("--seeds") + 1: cmd.index("--seeds") + 3] == ["0", "1"]
    assert cmd[cmd.index("--only") + 1] == "table3" and cmd[cmd.index("--extra") + 1] == "--optim.iters 3"
    assert cmd[cmd.index("--grid") + 1] == "g" and cmd[2] == "experiments"
    assert cli.build_parser().parse_args(cmd[3:]).jobs == 1  # the workers' command line parses
    with pytest.raises(SystemExit, match="--jobs"):
        cli.main(["run", "--jobs", "0", "--results-dir", str(tmp_path)])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_killed_harness_stops_its_training_runs(tmp_path, jobs) -> None:
    """SIGTERM to ``python -m experiments run`` (``kill``, as a user or a scheduler sends it) stops the training
    subprocesses it started, through its ``--jobs`` workers too, instead of leaving them running orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    pids.mkdir()
    fake = tmp_path / "fake-python"  # stands in for the interpreter of `python -m training.run ...`
    fake.write_text(f"#!/bin/sh\necho $$ > {pids}/$$\nexec sleep 120\n")
    fake.chmod(0o755)
    cmd = [sys.executable, "-m", "experiments", "run", "--grid", "killtest", "--targets", "tiny", "--seeds", "0", "1",
           "--only", "t1-wm-scc", "--python", str(fake), "--jobs", str(jobs), "--runs-dir", str(tmp_path / "runs"),
           "--results-dir", str(tmp_path / "results")]
    harness = subprocess.Popen(cmd, cwd=runner.ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list(pids.iterdir())) < jobs and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    children = [int(f.name) for f in pids.iterdir()]
    assert len(children) == jobs, children
    harness.send_signal(signal.SIGTERM)
    harness.wait(timeout=90)
    deadline = time.time() + 60
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = []
        for pid in children:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"training subprocesses {alive} outlived their harness"

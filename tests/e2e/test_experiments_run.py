"""End to end: the harness trains a tiny run, records it in its grid file, shares it with an alias, skips it."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

import experiments.__main__ as cli
from experiments import runner

pytestmark = pytest.mark.slow


def test_run_records_a_line_then_skips(tmp_path: Path, monkeypatch, capsys) -> None:
    extra = shlex.join([
        "--data.root", str(tmp_path / "tiny-seed0"), "--pretrain.root", str(tmp_path / "tiny-seed1"),
        "--pretrain.checkpoint", str(tmp_path / "pre.pt"), "--pretrain.iters", "2", "--pretrain.batch_size", "8",
        "--data.height", "64", "--data.width", "32", "--optim.batch_size", "8", "--optim.num_instances", "2",
        "--optim.iters", "2", "--optim.epochs", "1",
    ])
    argv = ["run", "--preset", "smoke", "--targets", "tiny", "--seeds", "0", "--only", "t1-wm-scc", "t3-weighted",
            "--extra", extra, "--results-dir", str(tmp_path / "results"), "--runs-dir", str(tmp_path / "runs"),
            "--grid", "g"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "tiny/t1-wm-scc/seed0: training ->" in printed and "same config as tiny/t1-wm-scc/seed0" in printed
    out = tmp_path / "runs" / "g" / "tiny" / "t1-wm-scc" / "seed0"
    lines = runner.read_records(tmp_path / "results" / "g.jsonl")
    assert len(lines) == 1  # the alias shares the run: no line of its own
    res = lines[0]
    assert set(res["final"]) == {"mAP", "rank1", "rank5", "rank10", "mINP"}
    assert res["seed"] == 0 and res["target"] == "tiny" and [r["epoch"] for r in res["per_epoch"]] == [-1, 0]
    assert res["argv"][res["argv"].index("--run.output") + 1] == str(out)
    assert "pseudo_mask_miou" in res["last_epoch"] and "pseudo_mask_fg_iou" in res["last_epoch"]
    before, first = map(json.loads, (out / "metrics.jsonl").read_text().splitlines()[:2])
    assert res["start"] == {**{k: first[k] for k in runner.START_KEYS}, "initial_mAP": before["mAP"],
                            "initial_rank1": before["rank1"]}
    assert res["per_epoch"] == [before, first]
    assert res["init_weights"]["sha256"] == hashlib.sha256((tmp_path / "pre.pt").read_bytes()).hexdigest()
    assert Path(res["init_weights"]["path"]).resolve() == (tmp_path / "pre.pt").resolve()
    assert not (tmp_path / "runs" / "g" / "tiny" / "t3-weighted").exists()

    monkeypatch.setattr(runner, "_launch", lambda *a: pytest.fail("a finished run was launched again"))
    assert cli.main(argv) == 0
    assert "done, skipped" in capsys.readouterr().out
    assert len(runner.read_records(tmp_path / "results" / "g.jsonl")) == 1

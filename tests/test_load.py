"""Load and soak (issue 21, section 2) at a CI size: ``Retriever.search`` from 1 and 4 threads, the app (``python
app.py`` in a child process) through Gradio's HTTP API with 1 and 4 concurrent clients, and a few seconds of soak,
on a gallery of 300 items; no request may fail and every answer must equal the serial answer of its query. The full
run is ``python -m benchmarks.bench_load`` (``docs/bench/load.md``), which shares this code."""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_load as bl
from benchmarks import load_clients as lc
from benchmarks import load_report as lr

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]

REF = [[(3, 0.9), (7, 0.8), (1, 0.5)], [(2, 0.7), (9, 0.6), (4, 0.1)]]


# ------------------------------------------------------------------------------------- the comparison itself
def test_compare_accepts_equal_answers_and_names_the_first_difference() -> None:
    ref = REF[0]
    assert lc.compare(list(ref), ref) is None
    assert lc.compare([(3, 0.9 + 9e-6), (7, 0.8), (1, 0.5 - 9e-6)], ref) is None  # within 1e-5
    assert lc.compare([(3, 0.9), (1, 0.8), (7, 0.5)], ref) == "rank 2: item 1, serial 7"
    assert lc.compare([(3, 0.9), (7, 0.8 + 2e-5), (1, 0.5)], ref).startswith("rank 2: score")
    assert lc.compare([(3, 0.9), (7, float("nan")), (1, 0.5)], ref).startswith("rank 2: score")
    assert lc.compare(ref[:2], ref) == "2 hits, serial 3"
    assert lc.compare(None, ref) == "no answer"


def test_wrong_answers_and_errors_under_load_are_counted() -> None:
    """A search that answers wrongly on some calls, or raises, is caught by the load harness (the test can fail)."""
    calls = {"n": 0}
    lock = threading.Lock()

    def flaky(q: int) -> lc.Answer:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n % 5 == 0:
            raise RuntimeError("boom")
        if n % 7 == 0:
            return list(reversed(REF[q]))  # same hits, wrong order
        return list(REF[q])

    samples, wall = lc.run_threads(flaky, len(REF), clients=4, per_client=10, progress=False)
    s = lc.summarize(samples, REF, wall, planned=40)
    assert s["requests"] == 40 and s["errors"] == 8 and s["error_examples"] == ["RuntimeError: boom"]
    assert s["mismatches"] == sum(1 for n in range(1, 41) if n % 7 == 0 and n % 5 != 0)
    assert s["equal"] == 40 - s["errors"] - s["mismatches"]
    assert bl.failed({"threads": [{**s, "clients": 4}]})
    good, wall = lc.run_threads(lambda q: list(REF[q]), len(REF), clients=3, per_client=4, progress=False)
    assert not bl.failed({"threads": [{**lc.summarize(good, REF, wall, planned=12), "clients": 3}]})
    assert sorted(s.client for s in good) == [0] * 4 + [1] * 4 + [2] * 4
    with pytest.raises(ValueError, match="stop by itself"):
        lc.run_threads(flaky, 2, clients=2)


def test_latency_statistics() -> None:
    st = lc.latency_stats([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert st["p50_ms"] == pytest.approx(50.5) and st["p99_ms"] == pytest.approx(99.01)
    assert st["max_ms"] == pytest.approx(100.0)
    assert lc.latency_stats([])["p50_ms"] is None


# ------------------------------------------------------------------------------------------- the real thing
@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("load")
    out = work / "load.md"
    args = bl.parse_args(["--gallery", "300", "--base", "24", "--queries", "6", "--height", "64", "--width", "32",
                          "--clients", "1", "4", "--requests", "16", "--http-requests", "8", "--minutes", "0.1",
                          "--windows", "3", "--soak-clients", "2", "--app-concurrency", "4", "--workdir",
                          str(work / "work"), "--out", str(out), "--no-progress"])
    res = bl.run(args)
    res["notes"] = ["hand-written notes survive"]
    text = bl.render(res)
    out.write_text(text)
    return {"res": res, "text": text, "out": out, "work": work / "work", "args": args}


def test_threads_answers_equal_serial(bench: dict[str, Any]) -> None:
    res = bench["res"]
    assert res["workload"]["count"] == 300 and res["workload"]["base"] == 24 and res["workload"]["queries"] == 6
    assert res["serial_repeatable"] == 6
    assert [r["clients"] for r in res["threads"]] == [1, 4]
    for r in res["threads"]:
        assert r["requests"] == r["planned"] == math.ceil(16 / r["clients"]) * r["clients"]
        assert r["errors"] == 0 and r["mismatches"] == 0 and r["equal"] == r["requests"], r
        assert r["throughput"] > 0 and 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]


def test_http_answers_equal_serial(bench: dict[str, Any]) -> None:
    """Over HTTP, with up to 4 searches running at once in the app (its concurrency limit set to 4)."""
    res = bench["res"]
    (e,) = res["http"]
    assert e["app"]["concurrency"] == 4
    s = e["serial"]
    assert s["requests"] == 6 and s["errors"] == 0 and s["equal"] == 6, s
    for r in e["levels"]:
        assert r["requests"] == r["planned"] == 8
        assert r["errors"] == 0 and r["mismatches"] == 0 and r["equal"] == 8, r
        assert r["cpu_ms_per_request"] > 0 and r["rss_mb"] > 50
    h = res["handler"]
    assert h["searches"] == 12 and h["handler_ms"] > h["query_ms"] > 0 and h["png_ms"] > 0


def test_soak_reports_rss_latency_drift_and_no_leak(bench: dict[str, Any]) -> None:
    s = bench["res"]["soak"]
    assert s["target"] == "http" and s["clients"] == 2 and s["seconds"] == pytest.approx(6.0)
    assert s["app"]["concurrency"] == 4 and s["app"]["exit_code"] is not None  # the soak's server, then stopped
    assert s["requests"] >= 1 and s["errors"] == 0 and s["mismatches"] == 0
    assert len(s["windows"]) == 3 and sum(w["requests"] for w in s["windows"]) == s["requests"]
    assert s["samples"] >= 3 and s["rss_end_mb"] > 50 and s["rss_max_mb"] >= s["rss_end_mb"]
    assert not s["leak"], s
    assert s["temp_end"]["files"] >= 1  # Gradio wrote uploads and tiles into the temporary folder we gave it


def test_report_structure_and_reuse(bench: dict[str, Any], tmp_path: Path) -> None:
    text = bench["text"]
    assert not bl.failed(bench["res"])
    for heading in ("# Load and soak", "## 1. `Retriever.search` from threads", "## 2. The app through its HTTP API",
                    "### Concurrency limit 4", "## 3. Soak", bl.NOTES_HEADING):
        assert heading in text
    assert "Command: `nice -n 19 env OMP_NUM_THREADS=1 python -m benchmarks.bench_load --gallery 300" in text
    assert "Machine: " in text and "CPU cores" in text and "gradio" in text
    assert text.count(lr.LEVEL_HEADER) == 2
    assert "| 4 | 16 |" in text and "| 4 | 8 |" in text  # threads and http rows
    # the notes section is kept when the report is rewritten from the raw results
    json_path = tmp_path / "res.json"
    json_path.write_text(__import__("json").dumps(bench["res"], default=str))
    assert bl.main(["--from-json", str(json_path), "--out", str(bench["out"])]) == 0
    assert bench["out"].read_text().rstrip().endswith("hand-written notes survive")
    # a second preparation with the same recipe reuses the gallery
    w = bl.prepare(bench["args"], bench["work"])
    assert w["reused"] and w["count"] == 300

"""Faults, nothing lost: kill -9 during ``serving.index build|add`` and ``serving.export``, a reader during adds,
and a full disk. Writes ``docs/bench/faults.md``.

    python -m benchmarks.bench_faults [--trials 20] [--launcher both] [--seed 0] [--out docs/bench/faults.md]

1. **Random kills.** Each command runs as a child process and gets ``SIGKILL`` after a delay drawn uniformly
   (seeded) within the duration of an uninterrupted run of the same command, measured first. Launchers:
   ``exec`` runs ``python -m serving.index ...`` / ``python -m serving.export ...`` as a new interpreter (as a user
   does; kills during the interpreter's start-up touch nothing), ``fork`` forks the child from a
   ``multiprocessing`` forkserver that has imported the modules and calls the same ``main(argv)``, so every delay
   falls in the command's own work. After each kill the artefact must be exactly the old one or exactly the new
   one, compared by checksum of the loaded content (index: loaded and verified by ``GalleryIndex.load``, then the
   items without their time stamps and the vectors read back from the verified FAISS file; export: every ONNX file
   loads in ONNX Runtime, its embedded ``scwm.fingerprint`` equals the fingerprint of its graph and weights, and
   the fingerprint and metadata, less the export time, of all files equal the old or the new set). Leftover files
   are recorded; the old state is restored only when a trial ended in the new one, so the next trial runs over
   whatever the killed one left, and a last uninterrupted run checks that they break nothing and are removed.
2. **A kill before every filesystem step** (``fork`` launcher): the child kills itself just before its k-th call
   that changes the files (``open`` for writing, ``tempfile.mkstemp``/``mkdtemp``, ``os.mkdir`` of a new folder,
   ``faiss.write_index``, ``onnx.save_model``, ``os.replace``/``rename``, ``os.unlink``/``remove``/``rmdir``,
   ``shutil.rmtree``), for k = 1, 2, ... until a run completes, each run from the old state alone (what the
   previous point left would shift the count). ``fsync`` and ``chmod`` are not counted: the
   page cache outlives a killed process, so a kill just before them leaves what a kill after the previous
   call leaves (they matter for a power loss, which this does not simulate).
3. **Reader during adds.** Reader processes load the index directory afresh in a loop
   (``load_consistent(d, GalleryIndex.load)``; ``IndexChangedError`` is the documented retry) while the parent runs
   ``add`` again and again; every load must be a committed state (items equal to one committed gallery, and a
   query with the embedding of a random item finds that item first).
4. **Full disk.** A size-limited tmpfs (``mount -t tmpfs -o size=...`` inside ``unshare -m``, or a user
   namespace); without one, ``RLIMIT_FSIZE`` (``EFBIG``). The old artefact is put on it, the free space set by a
   filler file, and the command run: it must fail with an error naming the path and leave the old artefact, or
   succeed when the space suffices.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.faults_artefacts import OPS, Fixture, make_fixture
from benchmarks.faults_concurrency import _disk_full_worker, disk_full, reader_during_adds
from benchmarks.faults_kills import (
    SCENARIOS,
    AddScenario,
    BuildScenario,
    ExportScenario,
    Launcher,
    crash_points,
    kill_trials,
    trace_new,
)

__all__ = ["OPS", "SCENARIOS", "AddScenario", "BuildScenario", "ExportScenario", "Fixture", "Launcher", "crash_points",
           "disk_full", "kill_trials", "make_fixture", "main", "reader_during_adds", "trace_new"]




# ------------------------------------------------------------------------------------------------ report
def _machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, Python "
            f"{platform.python_version()}, load average at the start {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _leftover_summary(rows: list[dict[str, Any]]) -> str:
    c: Counter[str] = Counter()
    for r in rows:
        for k, v in r["leftovers"].items():
            c[k] += bool(v)
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v) or "none"


def render(res: dict[str, Any]) -> str:
    lines = ["# Faults: kill -9, readers during add, full disk", "",
             f"Command: `{res['command']}` ({res['date']}, {res['total_seconds']:.0f} s in all).", "",
             f"Machine: {res['machine']}. Artefacts: a resnet18 SCWM model at 64x32 ({res['model_mb']:.1f} MB "
             f"ONNX, precisions {', '.join(res['precisions'])}), galleries of {res['n_old']} images (old) and "
             f"{res['n_old'] + res['n_new']} (new). Written by `benchmarks/bench_faults.py`, whose docstring "
             "describes the method; the CI runs the same code at a small count in `tests/test_faults.py`.", "",
             "## 1. SIGKILL at a random point", "",
             "Delay uniform in [0, T) with T the duration of an uninterrupted run (seeded). `exec`: a new "
             "`python -m` process (start-up included in T); `fork`: forked from a server that has imported the "
             "modules (T is the command's own work). Outcome by checksum of the loaded content: old, new, or "
             "broken (does not load, loads as neither, or a non-zero exit without a kill). Leftovers: how many "
             "trials left such files: `temp` (temporary files in the index directory or beside the model), "
             "`orphan_data` (data files of a generation never committed), `previous` (the generation the "
             "current one replaced, kept on purpose for readers), `build_temp_dirs` (`.NAME.XXXX.tmp/` of a "
             "fresh build killed before its rename). The recovery run is one uninterrupted run after the last "
             "trial, over what it left.", "",
             "| command | launcher | trials | killed | old | new | broken | T (s) | leftovers after the kill | "
             "recovery run | wall (s) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["kill"]:
        rec = r["recovery"]
        after = {k: v for k, v in rec["leftovers_after"].items() if v}
        rec_txt = (f"{rec['outcome']}, exit {rec['rc']}; left: "
                   + (", ".join(f"{k}: {len(v)}" for k, v in after.items()) or "nothing"))
        lines.append(f"| {r['op']} | {r['launcher']} | {r['trials']} | {r['killed']} | {r['old']} | {r['new']} | "
                     f"**{r['broken']}** | {r['reference_seconds']} | {_leftover_summary(r['rows'])} | {rec_txt} | "
                     f"{r['seconds']} |")
    broken = [(r["op"], row) for r in res["kill"] for row in r["rows"] if row["outcome"] == "broken"]
    for op, row in broken[:10]:
        lines.append(f"\n- broken {op} trial {row['trial']}: {row['detail']}")
    if res.get("crash"):
        lines += ["", "## 2. A kill just before each filesystem step", "",
                  "The child (`fork` launcher) SIGKILLs itself before its k-th filesystem-changing call, k = 1, 2, "
                  "... until a run completes, each run from the old state alone. `fsync` and `chmod` are not "
                  "counted (against SIGKILL the page cache survives).", "",
                  "| command | points | old | new | broken | wall (s) |", "|---|---|---|---|---|---|"]
        for r in res["crash"]:
            lines.append(f"| {r['op']} | {r['points']} | {r['old']} | {r['new']} | **{r['broken']}** | "
                         f"{r['seconds']} |")
        for r in res["crash"]:
            steps = [f"{row['point']}{('/' + row['mode']) if row['mode'] else ''} `{row['step']}` -> "
                     f"{row['outcome']}" for row in r["rows"] if row["rc"] != 0]
            lines += ["", f"{r['op']}: " + "; ".join(steps)]
    if res.get("reader"):
        r = res["reader"]
        lines += ["", "## 3. Readers during repeated adds", "",
                  f"{r['readers']} reader processes load the index afresh in a loop (`load_consistent(d, "
                  f"GalleryIndex.load)`) and query it, while this process runs `add_to_index` {r['adds']} times "
                  f"({r['per_add']} image each, {r['add_seconds']} s in all).", "",
                  "| loads | errors | retries (IndexChangedError, documented) | loads not a committed gallery | "
                  "distinct galleries seen | counts never decrease | final count |",
                  "|---|---|---|---|---|---|---|",
                  f"| {r['loads']} | **{r['errors']}** | {r['retries']} | **{r['problems']}** | {r['states_seen']} | "
                  f"{r['monotonic']} | {r['final_count']} |"]
        if r["examples"]:
            lines += ["", "Examples: " + "; ".join(r["examples"])]
    if res.get("disk"):
        d = res["disk"]
        lines += ["", "## 4. Full disk", "", f"Method: {d['method']}. The old artefact is in place (for `build`: "
                  "no index yet); the free space is set with a filler file; the command runs in-process through "
                  "its CLI `main`.", "",
                  "| command | free (bytes) | exit | artefact | clear error naming the path | leftovers | message |",
                  "|---|---|---|---|---|---|---|"]
        for c in d["cases"]:
            lines.append(f"| {c['op']} | {c['free_bytes']} | {c['rc']} | {c['state']} | "
                         f"{'yes' if c['clear_error'] else ('n/a' if c['rc'] == 0 else '**no**')} | "
                         f"{', '.join(c['stray']) or 'none'} | {c['message'].replace('|', '/')} |")
    lines += ["", NOTES_HEADING, ""] + res.get("notes", [])
    return "\n".join(lines) + "\n"


NOTES_HEADING = "## What the runs found and what changed"


def _notes(notes: str | None, out: Path) -> list[str]:
    """The hand-written last section: from ``notes`` if given, else kept from the report being replaced."""
    if notes:
        return Path(notes).read_text().splitlines()
    if out.is_file() and NOTES_HEADING in out.read_text():
        return out.read_text().split(NOTES_HEADING, 1)[1].strip("\n").splitlines()
    return []


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--disk-full-worker":
        _disk_full_worker(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_faults", description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="random kills per command and launcher")
    ap.add_argument("--launcher", choices=["exec", "fork", "both"], default="both")
    ap.add_argument("--ops", nargs="+", choices=OPS, default=list(OPS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp16", action="store_true", help="export an fp16 variant too (two files per export)")
    ap.add_argument("--no-crash-points", action="store_true")
    ap.add_argument("--reader-adds", type=int, default=60)
    ap.add_argument("--no-disk-full", action="store_true")
    ap.add_argument("--disk-method", choices=["auto", "tmpfs", "rlimit"], default="auto")
    ap.add_argument("--workdir", help="keep the artefacts and logs here (default: a temporary folder)")
    ap.add_argument("--out", default="docs/bench/faults.md")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--notes", help="markdown file appended as 'what the runs found'")
    ap.add_argument("--from-json", help="only render the report from results written by --json")
    args = ap.parse_args(argv)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
        res["notes"] = _notes(args.notes, Path(args.out))
        Path(args.out).write_text(render(res))
        print(f"wrote {args.out}")
        return 0
    t0 = time.perf_counter()
    precisions = ("fp32", "fp16") if args.fp16 else ("fp32",)
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="scwm-faults-")))
        logs = work / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        fx = make_fixture(work / "fixture", precisions=precisions)
        launchers = ["exec", "fork"] if args.launcher == "both" else [args.launcher]
        res: dict[str, Any] = {"command": "python -m benchmarks.bench_faults " + " ".join(
            argv if argv is not None else sys.argv[1:]), "machine": _machine(),
            "date": time.strftime("%Y-%m-%d"), "precisions": precisions, "n_old": 16, "n_new": 8,
            "model_mb": sum(f.stat().st_size for f in fx.model_files) / 1e6, "kill": [], "crash": []}
        for kind in launchers:
            launcher = Launcher(kind)
            for op in args.ops:
                sc = SCENARIOS[op](fx, work / f"{op}-{kind}")
                r = kill_trials(sc, launcher, args.trials, args.seed, logs)
                print(f"{op} {kind}: old {r['old']} new {r['new']} broken {r['broken']} ({r['seconds']} s)",
                      flush=True)
                res["kill"].append(r)
        if not args.no_crash_points:
            launcher = Launcher("fork")
            for op in args.ops:
                sc = SCENARIOS[op](fx, work / f"{op}-crash")
                r = crash_points(sc, launcher, logs)
                print(f"{op} crash points: {r['points']}, broken {r['broken']} ({r['seconds']} s)", flush=True)
                res["crash"].append(r)
        if args.reader_adds:
            res["reader"] = reader_during_adds(fx, work / "reader", adds=args.reader_adds, seed=args.seed)
            print(f"reader: {res['reader']['loads']} loads, {res['reader']['errors']} errors, "
                  f"{res['reader']['problems']} problems", flush=True)
        if not args.no_disk_full:
            res["disk"] = disk_full(fx, work / "disk-full", args.disk_method)
            print(f"disk full: {sum(c['state'].startswith('broken') for c in res['disk']['cases'])} broken of "
                  f"{len(res['disk']['cases'])}", flush=True)
        res["total_seconds"] = time.perf_counter() - t0
        res["notes"] = _notes(args.notes, Path(args.out))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1, default=str))
        Path(args.out).write_text(render(res))
        print(f"wrote {args.out}")
    failed = (any(r["broken"] for r in res["kill"] + res["crash"])
              or bool(res.get("reader") and (res["reader"]["errors"] or res["reader"]["problems"])))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

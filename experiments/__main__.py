"""Resumable harness for the paper's experiments (Tables 1-3, Fig. 5, peers) on the synthetic world.

``python -m experiments run --grid runs --targets market msmt --seeds 0 1 2 --only table1`` trains every selected
(target, experiment, seed) under ``runs/experiments/<grid>/`` and appends one line per finished run to
``experiments/results/<grid>.jsonl``; ``python -m experiments report`` renders every registered grid into
``docs/results/<grid>.md`` (mean ± sample standard deviation over seeds, the paper's numbers beside ours, whether
the paper's orderings hold, plots in ``docs/results/<grid>/``), the one-table summary ``docs/RESULTS.md`` and
the README's headline results table (:mod:`experiments.headline`).

On 2 CPU cores, ``--jobs 2`` with ``--extra "--run.precision bf16 --data.num_workers 0"`` is how the published
tables were made (on a CPU with native bf16; without it bf16 is emulated and 16x slower, so use
``--run.precision fp32`` and a separate ``--grid``, since precision is part of the fingerprint).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from .headline import README_PATH, update_readme
from .registry import BASE, EXPERIMENTS, GRIDS, GROUPS, TARGETS
from .report import NOTES_DIR, SUMMARY_PATH, build_report, build_summary, report_path
from .runner import (
    RESULTS_DIR,
    ROOT,
    RUNS_DIR,
    exit_on_sigterm,
    flags,
    grid_file,
    plan,
    precision_warning,
    recorded_runs,
    run_jobs,
    status,
    wait_all,
)


def worker_commands(args: argparse.Namespace) -> list[tuple[list[str], dict[str, str]]]:
    """Command and environment of each of the ``--jobs`` harness processes (same plan, one thread share each)."""
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    cmd = [args.python, "-m", "experiments", "run", "--preset", args.preset, "--targets", *args.targets,
           "--seeds", *map(str, args.seeds), "--grid", args.grid, "--results-dir", str(args.results_dir),
           "--runs-dir", str(args.runs_dir), "--python", args.python, "--jobs", "1"]
    if args.only:
        cmd += ["--only", *args.only]
    for chunk in args.extra or []:
        cmd += ["--extra", chunk]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return [(cmd, env) for _ in range(args.jobs)]


def cmd_run(args: argparse.Namespace) -> int:
    exit_on_sigterm()  # a killed harness stops its training runs instead of leaving them orphaned
    if args.jobs < 1:
        raise SystemExit(f"--jobs must be >= 1, got {args.jobs}")
    if args.jobs > 1 and not args.dry_run:
        procs = []
        for i, (cmd, env) in enumerate(worker_commands(args)):
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env))
            if i + 1 < args.jobs:
                time.sleep(2.0)  # let the first worker take the first run's lock
        return max(wait_all(procs))
    extra = [tok for chunk in args.extra or [] for tok in shlex.split(chunk)]
    jobs = plan(args.preset, args.targets, args.seeds, args.only, extra, Path(args.runs_dir) / args.grid)
    path = grid_file(Path(args.results_dir), args.grid)
    print(f"{len(jobs)} run(s): preset {args.preset}, targets {' '.join(args.targets)}, seeds "
          f"{' '.join(map(str, args.seeds))}" + (f", extra {shlex.join(extra)}" if extra else ""))
    warning = precision_warning(jobs)
    if warning:
        print(warning, flush=True)
    if not args.dry_run:
        return run_jobs(jobs, args.python, path)
    recorded = recorded_runs(path)
    for job in jobs:
        st = status(job, recorded)
        note = f" (same config as {job.canonical.key})" if job.canonical is not None and st == "alias" else ""
        note += f" (recorded with a different config; delete its line from {path.name} to rerun)" \
            if st == "stale" else ""
        print(f"[{st:>6}] {job.key}{note}\n         python -m training.run {shlex.join(job.argv)}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    results_dir = Path(args.results_dir)
    grids = args.grid or list(GRIDS)
    if len(grids) > 1 and (args.out or args.plots_dir):
        raise ValueError("--out and --plots-dir need a single --grid")
    for grid in grids:
        spec = GRIDS.get(grid)
        out = Path(args.out) if args.out else report_path(grid)
        build_report(grid_file(results_dir, grid), out, Path(args.plots_dir) if args.plots_dir else out.with_suffix(""),
                     NOTES_DIR / spec.note if spec else None, groups=args.only or (spec.groups if spec else None),
                     targets=args.targets or (spec.targets if spec else None))
        print(out)
    if args.grid is None:
        build_summary(list(GRIDS), results_dir, Path(args.summary))
        print(args.summary)
        if update_readme(results_dir, Path(args.readme)):
            print(args.readme)
    return 0


def cmd_list(_: argparse.Namespace) -> int:
    print(f"every experiment sets {shlex.join(flags(BASE))} unless its own flags say otherwise")
    for e in EXPERIMENTS:
        print(f"{e.group:7} {e.name:22} {shlex.join(flags(e.overrides)) or '(SCWM defaults)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` / ``report`` / ``list`` command line."""
    p = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="train the selected experiments (skips recorded runs, resumes interrupted)")
    r.add_argument("--preset", default="synthetic", help="base training preset")
    r.add_argument("--targets", nargs="+", default=["market"], choices=sorted(TARGETS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--only", nargs="+", default=None,
                   help=f"groups ({', '.join(GROUPS)}) or experiment names (see `list`); default: all")
    r.add_argument("--extra", action="append", default=None,
                   help='extra training flags, applied after the experiment\'s (e.g. "--optim.epochs 4")')
    r.add_argument("--dry-run", action="store_true", help="print the plan and commands, train nothing")
    r.add_argument("--grid", default="runs", help="the series the runs belong to: experiments/results/<grid>.jsonl")
    r.add_argument("--results-dir", default=str(RESULTS_DIR), help="folder of the <grid>.jsonl files")
    r.add_argument("--runs-dir", default=str(RUNS_DIR), help="folder of the runs' outputs (<grid>/<target>/...)")
    r.add_argument("--python", default=sys.executable, help="interpreter for the training subprocesses")
    r.add_argument("--jobs", type=int, default=1,
                   help="harness processes sharing the queue (per-run locks), each with cores/jobs threads; "
                        "2 single-threaded runs side by side beat 1 two-threaded run on 2 CPU cores")
    r.set_defaults(func=cmd_run)
    rep = sub.add_parser("report", help="render docs/results/<grid>.md and docs/RESULTS.md from the grid files")
    rep.add_argument("--grid", nargs="+", default=None,
                     help=f"render only these grids (default: all of {', '.join(GRIDS)}, and docs/RESULTS.md)")
    rep.add_argument("--results-dir", default=str(RESULTS_DIR), help="folder of the <grid>.jsonl files")
    rep.add_argument("--out", default=None, help="report file (one grid only; default docs/results/<grid>.md)")
    rep.add_argument("--plots-dir", default=None, help="plots folder (one grid only; default docs/results/<grid>/)")
    rep.add_argument("--summary", default=str(SUMMARY_PATH), help="the one-table summary (written for all grids)")
    rep.add_argument("--readme", default=str(README_PATH),
                     help="file whose headline results table is regenerated (written for all grids)")
    rep.add_argument("--only", nargs="+", default=None, choices=list(GROUPS),
                     help="report only these groups (default: the grid's registered scope, or all)")
    rep.add_argument("--targets", nargs="+", default=None, choices=sorted(TARGETS),
                     help="report only these targets (default: the grid's, or market, msmt and any other found)")
    rep.set_defaults(func=cmd_report)
    lst = sub.add_parser("list", help="print the experiment table")
    lst.set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:
        parser.error(str(exc))
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Plan, lock and execute the harness's training runs; record each finished run in its grid's JSONL file.

Each training runs as a subprocess (``python -m training.run``) rather than in-process: a run gets a fresh
interpreter (no logging handlers, RNG, thread or allocator state leaking from the previous run), a crash or
out-of-memory kill of one run cannot take down the harness, and its console output goes to ``harness.log``
in the run directory (``runs/experiments/<grid>/<target>/<experiment>/seed<k>/``, not in git). A run whose
line is in ``experiments/results/<grid>.jsonl`` is skipped; an interrupted run is relaunched with the same
``--run.output`` and resumes from its ``checkpoint.pt``. Experiments whose resolved configuration is identical
(e.g. Table 3 "weighted" and Table 1 "+WM+SCC") are trained once; the report shares the result.

Several harness processes can share one plan: each run directory has a lock file, a locked run is left to its
owner, so ``--jobs N`` (or N harness commands started by hand) work through the queue together.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from scwm.utils import sha256_file
from training.cli import build_parser
from training.config import PRESETS, TrainConfig, preset_config
from training.logs import MetricsLog
from training.model_init import initial_weights_file

from .registry import EXPERIMENTS, PARSING_KEYS, TARGETS, Experiment, Overrides, experiment_overrides, select

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "experiments" / "results"
"""``<grid>.jsonl`` files: one line per finished run (in git)."""
RUNS_DIR = ROOT / "runs" / "experiments"
"""``<grid>/<target>/<experiment>/seed<k>/``: the runs' bulky outputs (not in git)."""

Record = dict[str, Any]
"""One line of a grid's JSONL file: a finished run."""


def grid_file(results_dir: Path, grid: str) -> Path:
    """The JSONL file of ``grid``."""
    return results_dir / f"{grid}.jsonl"


def read_records(path: Path) -> list[Record]:
    """The lines of a JSONL file ([] if there is none)."""
    return MetricsLog(path).records()


# ---------------------------------------------------------------------------------------------- configs
def _flag_value(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    return f"{v:g}" if isinstance(v, float) else str(v)


def flags(overrides: Overrides) -> list[str]:
    """Command-line flags of ``overrides`` (``{"cluster.eta": 3.0}`` -> ``["--cluster.eta", "3"]``)."""
    return [tok for key, v in overrides.items() for tok in (f"--{key}", _flag_value(v))]


def nest(overrides: Overrides) -> dict[str, Any]:
    """Nested sections of flat dotted overrides, as :func:`training.config.preset_config` takes them."""
    out: dict[str, Any] = {}
    for key, v in overrides.items():
        section, name = key.split(".")
        out.setdefault(section, {})[name] = v
    return out


def extra_overrides(extra: Sequence[str]) -> Overrides:
    """The overrides of user-given training flags (``--extra``); ValueError with the reason if invalid."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = build_parser().parse_args(list(extra))
    except SystemExit as exc:
        raise ValueError(f"invalid training flags {shlex.join(extra)}:\n{err.getvalue().strip()}") from exc
    if ns.config or ns.print_config or "--preset" in extra:
        raise ValueError(f"--extra takes section.field flags only, got {shlex.join(extra)}")
    return {k: v for k, v in vars(ns).items() if "." in k and v is not None}


def run_overrides(target: str, exp: Experiment, seed: int, out: Path, extra: Overrides) -> Overrides:
    """Overrides of one run: target < experiment (with :data:`~experiments.registry.BASE`) < ``extra`` < seed
    and output (later keys win)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return {**TARGETS[target], **experiment_overrides(exp), **extra, "run.seed": seed, "run.output": str(out),
            "run.progress": False}


def build_argv(preset: str, target: str, exp: Experiment, seed: int, out: Path, extra: Sequence[str]) -> list[str]:
    """Training flags of one run, in the order of :func:`run_overrides` (later flags win)."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(TARGETS)}")
    return ["--preset", preset, *flags(TARGETS[target]), *flags(experiment_overrides(exp)), *extra,
            "--run.seed", str(seed), "--run.output", str(out), "--run.progress", "false"]


def run_config(preset: str, target: str, exp: Experiment, seed: int, out: Path, extra: Overrides) -> TrainConfig:
    """The validated training config of one run (ValueError with the reason if invalid)."""
    return preset_config(preset, nest(run_overrides(target, exp, seed, out, extra)))


# ---------------------------------------------------------------------------------------------- planning
@dataclass
class Job:
    """One training run of the plan."""

    target: str
    experiment: Experiment
    seed: int
    argv: list[str]
    out: Path
    config: TrainConfig
    preset: str = "synthetic"
    extra: tuple[str, ...] = ()
    canonical: Job | None = None
    """Earlier job with the identical resolved config: this one shares its result."""

    @property
    def key(self) -> str:
        return f"{self.target}/{self.experiment.name}/seed{self.seed}"

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint()


def record_key(r: Record) -> str:
    """``target/experiment/seed<k>`` of a recorded run."""
    return f"{r['target']}/{r['experiment']}/seed{r['seed']}"


def run_dir(runs_dir: Path, target: str, experiment: str, seed: int) -> Path:
    return runs_dir / target / experiment / f"seed{seed}"


def plan(preset: str, targets: Sequence[str], seeds: Sequence[int], only: Sequence[str] | None,
         extra: Sequence[str], runs_dir: Path) -> list[Job]:
    """All selected jobs; a job whose config equals an earlier experiment's (in table order) aliases it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    chosen = {e.name for e in select(list(only) if only else None)}
    extra_ov = extra_overrides(extra)
    jobs: list[Job] = []
    for target in targets:
        for seed in seeds:
            first: dict[str, Job] = {}
            for exp in EXPERIMENTS:  # all experiments, so that a selected alias finds its canonical run
                out = run_dir(runs_dir, target, exp.name, seed)
                cfg = run_config(preset, target, exp, seed, out, extra_ov)
                job = Job(target, exp, seed, build_argv(preset, target, exp, seed, out, extra), out, cfg, preset,
                          tuple(extra))
                job.canonical = first.get(job.fingerprint)
                first.setdefault(job.fingerprint, job)
                if exp.name in chosen:
                    jobs.append(job)
    return jobs


def status(job: Job, recorded: dict[str, Record]) -> str:
    """``done``, ``stale`` (done with another config), ``alias`` (shares another run), ``resume`` or ``new``."""
    old = recorded.get(job.key)
    if old is not None:
        return "done" if old.get("fingerprint") == job.fingerprint else "stale"
    if job.canonical is not None:
        return "alias"
    if (job.out / "checkpoint.pt").is_file():
        return "resume"
    return "new"


def recorded_runs(path: Path) -> dict[str, Record]:
    """The recorded runs of a grid file by key (a later line for the same run wins)."""
    return {record_key(r): r for r in read_records(path)}


# --------------------------------------------------------------------------------------------- running
@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[bool]:
    """Exclusive per-run lock file; yields False if another live process holds it."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".harness.lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # stale lock of a dead harness
                continue
            except PermissionError:
                pass
            yield False
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` in the calling (main) thread, so that a harness stopped with ``kill``
    stops its subprocesses and releases its run lock (``finally`` blocks run), as Ctrl-C does."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def wait_all(procs: Sequence[subprocess.Popen], grace_s: float = 30.0) -> list[int]:
    """Return codes of ``procs`` (the ``--jobs N`` workers); if the wait is interrupted (Ctrl-C, SIGTERM via
    :func:`exit_on_sigterm`), terminate them (kill after ``grace_s``) before re-raising: each worker then stops its
    own training run, so none outlives the harness."""
    try:
        return [p.wait() for p in procs]
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        raise


def _launch(cmd: list[str], log_path: Path) -> int:
    """Run one training subprocess from the project root, console output appended to ``log_path``
    (``subprocess.run`` kills it if the harness is interrupted: Ctrl-C, or SIGTERM via :func:`exit_on_sigterm`)."""
    with open(log_path, "ab") as fh:
        fh.write(f"\n$ {shlex.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, check=False).returncode


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def display_path(path: Path) -> str:
    """``path`` relative to the repository if it is inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path.resolve())


START_KEYS = ("num_clusters", "cluster_nmi", "cluster_ari")
"""Epoch-0 clustering figures: they depend only on the initial weights, the data, the clustering settings and
the precision (not on the seed), so runs that started from the same state share them exactly."""


def start_state(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The epoch-0 clustering figures of a run's metrics records (None if it has no epoch-0 clustering),
    with the initial model's retrieval figures (direct transfer, the epoch -1 record) when it was evaluated."""
    first = next((r for r in records if r.get("epoch") == 0), {})
    if not all(k in first for k in START_KEYS):
        return None
    before = next((r for r in records if r.get("epoch") == -1), {})
    return {**{k: first[k] for k in START_KEYS}, **{f"initial_{k}": before[k] for k in ("mAP", "rank1") if k in before}}


def initial_weights(cfg: TrainConfig) -> dict[str, str] | None:
    """Path and SHA-256 of the file a run's initial weights are loaded from (None for random/ImageNet init).

    Source pretraining is not bitwise reproducible across CPU kinds, so this, not the command, identifies
    the start point: runs with different hashes must not be pooled."""
    path = initial_weights_file(cfg)
    if path is None or not path.is_file():
        return None
    return {"path": display_path(path), "sha256": sha256_file(path)}


def collect_record(job: Job, wall_time_s: float) -> Record:
    """The grid-file line of a finished run (from training's results.json and metrics.jsonl)."""
    try:
        summary = json.loads((job.out / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"{job.key}: training exited cleanly but wrote no readable results.json") from exc
    records = read_records(job.out / "metrics.jsonl")
    last = records[-1] if records else {}
    return {
        "target": job.target, "experiment": job.experiment.name, "seed": job.seed, "preset": job.preset,
        "extra": list(job.extra), "argv": job.argv, "fingerprint": job.fingerprint,
        "final": summary.get("final", {}),
        "last_epoch": {"epoch": last.get("epoch"), **{k: last[k] for k in PARSING_KEYS if k in last}},
        "start": start_state(records), "init_weights": initial_weights(job.config),
        "wall_time_s": round(wall_time_s, 1),
        "train_time_s": round(sum(float(r.get("time_epoch_s", 0.0)) for r in records), 1),
        "out": display_path(job.out), "git_commit": _git_commit(),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "per_epoch": records,
    }


class Locked(Exception):
    """Another live harness process is training this run (several harnesses share one queue)."""


def execute(job: Job, python: str, grid_path: Path, announce: str | None = None) -> Record | None:
    """Train ``job`` (resuming if interrupted before) and append its line to ``grid_path``; None on failure.

    ``announce`` is printed once the run's lock is held and training starts. Raises :class:`Locked`
    when another harness process holds the run's lock."""
    with run_lock(job.out) as got:
        if not got:
            raise Locked(job.key)
        done = recorded_runs(grid_path).get(job.key)
        if done is not None and done.get("fingerprint") == job.fingerprint:  # finished by another process
            return done
        if announce:
            print(announce, flush=True)
        tic = time.time()
        log_path = job.out / "harness.log"
        rc = _launch([python, "-m", "training.run", *job.argv], log_path)
        if rc != 0:
            tail = log_path.read_text(errors="replace").splitlines()[-15:] if log_path.is_file() else []
            print(f"  {job.key}: FAILED (exit {rc}); last lines of {log_path}:\n    " + "\n    ".join(tail))
            return None
        record = collect_record(job, time.time() - tic)
        MetricsLog(grid_path).append(record)
        return record


def fmt_final(record: Record | None) -> str:
    """``mAP x%, R1 y%`` of a recorded run."""
    final = (record or {}).get("final") or {}
    if "mAP" not in final:
        return "no evaluation"
    return f"mAP {100 * final['mAP']:.1f}%, R1 {100 * final['rank1']:.1f}%"


def precision_warning(jobs: Sequence[Job]) -> str | None:
    """``training.runtime.precision_warning`` for the planned runs (e.g. bf16 on a CPU that only emulates it)."""
    if not jobs:
        return None
    run_cfg = jobs[0].config.run
    if run_cfg.precision == "fp32":
        return None
    from scwm.utils import pick_device
    from training.runtime import precision_warning as _why

    why = _why(pick_device(str(run_cfg.device)), str(run_cfg.precision))
    if why is None:
        return None
    return (f"warning: --run.precision {run_cfg.precision}: {why}. A precision change alters the fingerprint, "
            "so keep such runs in a separate --grid.")


def run_jobs(jobs: Sequence[Job], python: str, grid_path: Path) -> int:
    """Train every job not yet recorded in ``grid_path`` (an alias trains its canonical run); exit status."""
    failed = skipped = 0
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.key}"
        recorded = recorded_runs(grid_path)
        st = status(job, recorded)
        if st in ("done", "stale"):
            warn = (f" (WARNING: recorded with a different config; delete its line from {grid_path.name} to rerun)"
                    if st == "stale" else "")
            print(f"{head}: done, skipped{warn}")
            continue
        target = job.canonical or job
        if job.canonical is not None:
            source = recorded.get(target.key)
            if source is not None:
                if source.get("fingerprint") != job.fingerprint:
                    print(f"{head}: WARNING: {target.key} was recorded with a different config; not shared")
                else:
                    print(f"{head}: same config as {target.key}: {fmt_final(source)}")
                continue
            print(f"{head}: same config as {target.key}, training that first")
        try:
            verb = "resuming" if status(target, recorded) == "resume" else "training"
            result = execute(target, python, grid_path, f"{head}: {verb} -> {display_path(target.out)}")
        except Locked:
            print(f"{head}: locked by another harness process, skipped", flush=True)
            skipped += 1
            continue
        if result is None:
            failed += 1
        else:
            print(f"{head}: {fmt_final(result)} in {result.get('wall_time_s', 0):.0f} s", flush=True)
    print(f"finished: {len(jobs) - failed - skipped} ok, {failed} failed, {skipped} left to other harness processes")
    return 1 if failed else 0

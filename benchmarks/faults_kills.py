"""Fault-injection harness (docs in ``benchmarks/bench_faults.py``): launchers, the build/add/export scenarios,
random kills and a kill before every filesystem step."""

from __future__ import annotations

import contextlib
import io
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.faults_artefacts import (
    PRELOAD,
    ROOT,
    Fixture,
    State,
    export_leftovers,
    export_state,
    index_leftovers,
    index_state,
)


# --------------------------------------------------------------------------------------------- launchers
def _install_crash_hooks(crash_at: int, note_path: str) -> None:
    """Make this process SIGKILL itself just before its ``crash_at``-th filesystem-changing call, after writing
    that call to ``note_path``."""
    import builtins

    import faiss
    import onnx

    note_fd = os.open(note_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    count = [0]
    real_kill, real_write, getpid = os.kill, os.write, os.getpid

    def step(desc: str) -> None:
        count[0] += 1
        if count[0] == crash_at:
            real_write(note_fd, desc.encode(errors="replace"))
            real_kill(getpid(), signal.SIGKILL)

    def short(a: Any) -> str:
        return Path(a).name if isinstance(a, (str, os.PathLike)) else type(a).__name__

    def wrap(mod: Any, name: str) -> None:
        real = getattr(mod, name)

        def hooked(*args: Any, **kwargs: Any) -> Any:
            step(f"{mod.__name__}.{name}({', '.join(short(a) for a in args[:2])})")
            return real(*args, **kwargs)

        setattr(mod, name, hooked)

    # calls that change what a killed process leaves behind; chmod and fsync are left out (against SIGKILL the
    # page cache survives, so a kill just before them leaves the same files as a kill just after the call before)
    for mod, name in ((os, "replace"), (os, "rename"), (os, "unlink"), (os, "remove"), (os, "rmdir"),
                      (shutil, "rmtree"), (tempfile, "mkstemp"), (tempfile, "mkdtemp"), (faiss, "write_index"),
                      (onnx, "save_model")):
        wrap(mod, name)
    real_mkdir = os.mkdir

    def hooked_mkdir(path: Any, *args: Any, **kwargs: Any) -> Any:
        if not os.path.exists(path):  # Path.mkdir(exist_ok=True) on an existing folder changes nothing
            step(f"os.mkdir({short(path)})")
        return real_mkdir(path, *args, **kwargs)

    os.mkdir = hooked_mkdir  # type: ignore[assignment]
    real_open = io.open

    def hooked_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if any(c in mode for c in "wax+"):
            step(f"open({short(file)}, {mode!r})")
        return real_open(file, mode, *args, **kwargs)

    io.open = builtins.open = hooked_open  # type: ignore[assignment]


def _child(module: str, argv: list[str], log: str, crash_at: int | None, traced: str | None = None) -> None:
    """Run ``module.main(argv)`` in a forked child, its output to ``log``; ``traced``: an ONNX file whose graph
    replaces the export's tracing step (everything after it, verification and writing, runs as usual)."""
    import importlib

    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    main = importlib.import_module(module).main
    if traced is not None:
        import onnx

        from serving import export as ex

        ex._export_proto = lambda *a: onnx.load(traced)  # type: ignore[assignment]
    if crash_at is not None:
        _install_crash_hooks(crash_at, log + ".crash")
    rc = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(rc)


class Handle:
    """A started command: ``poll()``, ``kill()`` (SIGKILL), ``wait()`` -> return code (negative: signal)."""

    def __init__(self, proc: subprocess.Popen | mp.process.BaseProcess) -> None:
        self.proc = proc

    def poll(self) -> int | None:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll()
        return self.proc.exitcode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    def wait(self, timeout: float = 600.0) -> int:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.wait(timeout)
        self.proc.join(timeout)
        if self.proc.exitcode is None:
            self.proc.kill()
            self.proc.join()
        return int(self.proc.exitcode)


class Launcher:
    """``exec``: a new ``python -m module`` process; ``fork``: a child of a forkserver that preloaded the modules."""

    def __init__(self, kind: str) -> None:
        if kind not in ("exec", "fork"):
            raise ValueError(f"unknown launcher {kind!r}")
        self.kind = kind
        self.ctx = None
        if kind == "fork":
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)

    def warm_up(self) -> None:
        """Start the forkserver (it imports the modules) / fill the page cache, outside any measured run."""
        if self.kind == "fork":
            assert self.ctx is not None
            p = self.ctx.Process(target=os.getpid, daemon=True)
            p.start()
            p.join()
        else:
            subprocess.run([sys.executable, "-c", "import serving.index, serving.export"], cwd=ROOT, check=True)

    def start(self, module: str, argv: Sequence[str], log: Path, crash_at: int | None = None,
              traced: Path | None = None) -> Handle:
        if self.kind == "exec":
            if crash_at is not None or traced is not None:
                raise ValueError("crash points and a pre-traced export need the fork launcher")
            with open(log, "ab") as fh:
                return Handle(subprocess.Popen([sys.executable, "-m", module, *argv], stdout=fh,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT))
        assert self.ctx is not None
        p = self.ctx.Process(target=_child, args=(module, list(argv), str(log), crash_at,
                                                  None if traced is None else str(traced)), daemon=True)
        p.start()
        return Handle(p)


# --------------------------------------------------------------------------------------------- scenarios
class Scenario:
    """One command over one artefact: how to put the old state in place, the command, and the outcome."""

    op: str
    module: str

    traced: Path | None = None  # export only: a pre-traced graph for the fork launcher (see _child)

    def __init__(self, fx: Fixture, work: Path) -> None:
        self.fx, self.work = fx, work
        self.work.mkdir(parents=True, exist_ok=True)
        self.old_key: dict[str, str] = {}   # mode -> key of the old state ("" = absent)
        self.new_key: dict[str, str] = {}

    modes: tuple[str, ...] = ("",)

    def argv(self, mode: str) -> list[str]:
        raise NotImplementedError

    def state(self) -> State:
        raise NotImplementedError

    def leftovers(self) -> dict[str, list[str]]:
        raise NotImplementedError

    def restore_old(self, mode: str) -> None:
        """Put the old state in place (called only when the artefact is not the old one already)."""
        raise NotImplementedError

    def pristine(self, mode: str) -> None:
        """The old state and nothing else (no leftovers of earlier runs)."""
        for p in self.leftover_paths():
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        self.restore_old(mode)

    def leftover_paths(self) -> list[Path]:
        raise NotImplementedError

    def ensure_old(self, mode: str) -> None:
        if self.classify(self.state(), mode)[0] != "old":
            self.restore_old(mode)

    def classify(self, st: State, mode: str) -> tuple[str, str]:
        old = self.old_key.get(mode, "")
        if st.kind == "absent":
            return ("old", "absent") if old == "" else ("broken", "artefact missing")
        if st.kind == "error":
            return "broken", st.detail
        if st.key == old:
            return "old", ""
        if st.key == self.new_key.get(mode):
            return "new", ""
        return "broken", f"loads but is neither old nor new ({st.count} items)"


class IndexScenario(Scenario):
    module = "serving.index"

    def __init__(self, fx: Fixture, work: Path) -> None:
        super().__init__(fx, work)
        self.dir = work / "index"
        self.old_ref = work / "old-ref"
        if not self.old_ref.exists():
            from serving.index import build_index

            build_index(fx.model, [fx.old_images], self.old_ref, progress=False)

    def state(self) -> State:
        return index_state(self.dir)

    def leftovers(self) -> dict[str, list[str]]:
        return index_leftovers(self.dir)

    def leftover_paths(self) -> list[Path]:
        return [self.dir, *self.dir.parent.glob(f".{self.dir.name}.*.tmp")]


class BuildScenario(IndexScenario):
    """``build`` of old + new images: ``fresh`` (old state: no directory) or ``overwrite`` (old: the old index)."""

    op = "build"
    modes = ("fresh", "overwrite")

    def argv(self, mode: str) -> list[str]:
        extra = ["--overwrite"] if mode == "overwrite" else []
        return ["build", "--model", str(self.fx.model), "--images", str(self.fx.old_images), str(self.fx.new_images),
                "--out", str(self.dir), "--no-progress", *extra]

    def restore_old(self, mode: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        if mode == "overwrite":
            shutil.copytree(self.old_ref, self.dir)


class AddScenario(IndexScenario):
    """``add`` of the new images to the index of the old ones."""

    op = "add"
    modes = ("",)

    def argv(self, mode: str) -> list[str]:
        return ["add", "--index", str(self.dir), "--images", str(self.fx.new_images), "--no-progress"]

    def restore_old(self, mode: str) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.copytree(self.old_ref, self.dir)


class ExportScenario(Scenario):
    """``serving.export`` of the new checkpoint over the export of the old one (same precisions). With ``traced``
    (:func:`trace_new`) each run takes that graph instead of tracing it again (fork launcher only): a shorter run
    whose kill points all fall in loading, verifying and writing."""

    op = "export"
    module = "serving.export"
    modes = ("",)

    def __init__(self, fx: Fixture, work: Path, traced: Path | None = None) -> None:
        super().__init__(fx, work)
        self.out = work / "exports" / "model.onnx"
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.traced = traced

    def argv(self, mode: str) -> list[str]:
        flags = {"fp16": ["--fp16"], "int8-dynamic": ["--int8", "dynamic"], "int8-static": ["--int8", "static"]}
        extra = [a for p in self.fx.precisions if p != "fp32" for a in flags[p]]
        if "int8-static" not in self.fx.precisions:
            extra.append("--no-int8")  # the CLI writes the int8-static sibling by default; the set is the fixture's
        return ["--checkpoint", str(self.fx.ckpt_new), "--out", str(self.out), *extra]

    def state(self) -> State:
        return export_state(self.out, self.fx.precisions)

    def leftovers(self) -> dict[str, list[str]]:
        return export_leftovers(self.out)

    def leftover_paths(self) -> list[Path]:
        return [self.out.parent / n for n in export_leftovers(self.out)["temp"]]

    def restore_old(self, mode: str) -> None:
        from serving.export import variant_path

        for p, src in zip(self.fx.precisions, self.fx.model_files, strict=True):
            shutil.copyfile(src, variant_path(self.out, p))


def trace_new(fx: Fixture, path: Path) -> Path:
    """The traced ONNX graph of the new checkpoint, saved to ``path`` (for ``ExportScenario(traced=...)``)."""
    import onnx

    from scwm.models.checkpoint import load_model
    from serving import export as ex

    if not path.exists():
        model, spec = load_model(fx.ckpt_new, "cpu")
        onnx.save_model(ex._export_proto(model.eval(), spec, ex.DEFAULT_OPSET), str(path))
    return path


SCENARIOS: dict[str, type[Scenario]] = {"build": BuildScenario, "add": AddScenario, "export": ExportScenario}


def _run(sc: Scenario, launcher: Launcher, mode: str, log: Path, crash_at: int | None = None,
         kill_after: float | None = None) -> tuple[int, float, bool]:
    """Run the scenario's command; returns (return code, seconds, whether it was killed by us)."""
    t0 = time.perf_counter()
    h = launcher.start(sc.module, sc.argv(mode), log, crash_at, sc.traced if launcher.kind == "fork" else None)
    killed = False
    if kill_after is not None:
        while time.perf_counter() - t0 < kill_after and h.poll() is None:
            time.sleep(min(0.005, max(0.0, kill_after - (time.perf_counter() - t0))))
        if h.poll() is None:
            h.kill()
            killed = True
    rc = h.wait()
    return rc, time.perf_counter() - t0, killed


def _tail(log: Path, n: int = 3) -> str:
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def references(sc: Scenario, launcher: Launcher, logs: Path, modes: Sequence[str] | None = None) -> float:
    """Uninterrupted runs from the old state of every mode: the new state's key and the duration (the longest
    over the modes), after which the old state is put back."""
    durations = []
    launcher.warm_up()
    for mode in modes or sc.modes:
        sc.restore_old(mode)
        sc.old_key[mode] = "" if sc.state().kind == "absent" else sc.state().key
        log = logs / f"{sc.op}-{launcher.kind}-reference{('-' + mode) if mode else ''}.log"
        rc, secs, _ = _run(sc, launcher, mode, log)
        st = sc.state()
        if rc != 0 or st.kind != "ok":
            raise RuntimeError(f"uninterrupted {sc.op} {mode} failed (rc {rc}, {st.detail}): {_tail(log)}")
        sc.new_key[mode] = st.key
        durations.append(secs)
        sc.restore_old(mode)
    return max(durations)


def kill_trials(sc: Scenario, launcher: Launcher, trials: int, seed: int, logs: Path) -> dict[str, Any]:
    """``trials`` runs killed after a uniform random delay within the reference duration, then a recovery run."""
    t_start = time.perf_counter()
    ref = references(sc, launcher, logs)
    rng = random.Random(f"{seed}/{sc.op}/{launcher.kind}")
    rows = []
    last_kill = 0.0
    for i in range(trials):
        mode = sc.modes[i % len(sc.modes)]
        sc.ensure_old(mode)  # keeps what an earlier killed trial left next to an old artefact
        delay = rng.uniform(0.0, ref)
        log = logs / f"{sc.op}-{launcher.kind}-trial{i:03d}.log"
        rc, secs, killed = _run(sc, launcher, mode, log, kill_after=delay)
        if killed:
            last_kill = time.perf_counter()
        outcome, detail = sc.classify(sc.state(), mode)
        if not killed and rc != 0:
            outcome, detail = "broken", f"exit {rc} without a kill: {_tail(log)}"
        rows.append({"trial": i, "mode": mode, "delay": round(delay, 3), "killed": killed, "rc": rc,
                     "outcome": outcome, "detail": detail, "leftovers": sc.leftovers()})
    # recovery: the next run over what the last trials left must succeed and clean up (temporary files of a
    # killed writer are taken for stale once STALE_TEMP_AGE has passed since the kill)
    from scwm import utils

    if any(v for k, v in sc.leftovers().items() if k == "temp"):
        time.sleep(max(0.0, getattr(utils, "STALE_TEMP_AGE", 0.0) + 0.2 - (time.perf_counter() - last_kill)))
    mode = sc.modes[0]
    sc.ensure_old(mode)
    before = sc.leftovers()
    log = logs / f"{sc.op}-{launcher.kind}-recovery.log"
    rc, _, _ = _run(sc, launcher, mode, log)
    outcome, detail = sc.classify(sc.state(), mode)
    recovery = {"rc": rc, "outcome": outcome, "detail": detail if rc == 0 else _tail(log),
                "leftovers_before": before, "leftovers_after": sc.leftovers()}
    counts = Counter(r["outcome"] for r in rows)
    return {"op": sc.op, "launcher": launcher.kind, "trials": trials, "reference_seconds": round(ref, 2),
            "killed": sum(r["killed"] for r in rows), "old": counts["old"], "new": counts["new"],
            "broken": counts["broken"], "rows": rows, "recovery": recovery,
            "seconds": round(time.perf_counter() - t_start, 1)}


def crash_points(sc: Scenario, launcher: Launcher, logs: Path, max_points: int = 80,
                 modes: Sequence[str] | None = None) -> dict[str, Any]:
    """Kill the command just before each of its filesystem-changing calls in turn (fork launcher only)."""
    t_start = time.perf_counter()
    references(sc, launcher, logs, modes)
    rows = []
    for mode in modes or sc.modes:
        for k in range(1, max_points + 1):
            # from the old state alone: what earlier points left would change the step count (stale temporary
            # files are removed once old enough), and leftovers are the random trials' business
            sc.pristine(mode)
            log = logs / f"{sc.op}-crash{('-' + mode) if mode else ''}-{k:03d}.log"
            rc, _, _ = _run(sc, launcher, mode, log, crash_at=k)
            if rc == 0:  # completed: fewer than k steps
                outcome, detail = sc.classify(sc.state(), mode)
                rows.append({"mode": mode, "point": k, "step": "(none: completed)", "rc": rc, "outcome": outcome,
                             "detail": detail, "leftovers": sc.leftovers()})
                break
            step = Path(str(log) + ".crash").read_text() if Path(str(log) + ".crash").exists() else "?"
            outcome, detail = sc.classify(sc.state(), mode)
            if rc != -signal.SIGKILL:
                outcome, detail = "broken", f"exit {rc}: {_tail(log)}"
            rows.append({"mode": mode, "point": k, "step": step, "rc": rc, "outcome": outcome, "detail": detail,
                         "leftovers": sc.leftovers()})
    counts = Counter(r["outcome"] for r in rows if r["rc"] != 0)
    return {"op": sc.op, "points": sum(r["rc"] != 0 for r in rows), "old": counts["old"], "new": counts["new"],
            "broken": counts["broken"], "rows": rows, "seconds": round(time.perf_counter() - t_start, 1)}

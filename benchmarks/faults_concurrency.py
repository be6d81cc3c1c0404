"""Fault-injection harness (docs in ``benchmarks/bench_faults.py``): readers during adds and a full disk."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.faults_artefacts import PRELOAD, ROOT, Fixture, export_state, index_state, sha_of


# ------------------------------------------------------------------------------------- reader during add
def _reader(d: str, embeddings: dict[str, list[float]], valid: dict[str, int], stop: Any, ready: Any, seed: int,
            out: Any) -> None:
    """Load ``d`` afresh in a loop; record the items key and count of every load and check a query."""
    from serving.index import GalleryIndex

    try:
        from serving.manifest import IndexChangedError, load_consistent
    except ImportError:  # code from before the retry existed (for a before/after comparison)
        IndexChangedError = RuntimeError  # noqa: N806

        def load_consistent(d: str, load: Any) -> Any:
            return load()

    rng = random.Random(seed)
    attempts = [0]

    def load() -> GalleryIndex:
        attempts[0] += 1
        return GalleryIndex.load(d, use_gpu=False)

    loads = errors = 0
    seen: Counter[str] = Counter()
    problems: list[str] = []
    error_examples: list[str] = []
    counts: list[int] = []
    ready.set()
    while not stop.is_set():
        try:
            g = load_consistent(d, load)
        except Exception as exc:  # noqa: BLE001 - every error is recorded
            errors += 1
            error_examples.append(f"{type(exc).__name__}: {exc}"[:300])
            continue
        loads += 1
        key = sha_of([[it["path"], it.get("pid"), it.get("camera")] for it in g.items])
        if key not in valid or valid[key] != g.count:
            problems.append(f"load {loads}: {g.count} items, not a committed gallery")
        i = rng.randrange(g.count)
        _, ids = g.search(np.asarray([embeddings[g.items[i]["path"]]], np.float32), k=1)
        if int(ids[0, 0]) != i:
            problems.append(f"load {loads}: item {i} query found {int(ids[0, 0])}")
        seen[key] += 1
        counts.append(g.count)
        close = getattr(g, "close", None)
        if close is not None:
            close()
    monotonic = all(a <= b for a, b in zip(counts, counts[1:], strict=False))
    out.put({"loads": loads, "errors": errors, "retries": attempts[0] - loads - errors, "states": len(seen),
             "problems": problems[:20], "n_problems": len(problems), "monotonic": monotonic,
             "error_examples": error_examples[:20],
             "retry_error": IndexChangedError.__name__})


def reader_during_adds(fx: Fixture, work: Path, adds: int = 30, per_add: int = 1, readers: int = 2,
                       seed: int = 0) -> dict[str, Any]:
    """Readers load the index in a loop while ``add`` runs ``adds`` times (in this process, as fast as it
    goes); every state a reader sees must be one that was committed."""
    from serving import export as ex
    from serving.engine import OnnxEngine
    from serving.index import add_to_index, build_index, collect_images

    t_start = time.perf_counter()
    d = work / "reader-index"
    shutil.rmtree(d, ignore_errors=True)
    extra = work / "reader-images"
    shutil.rmtree(extra, ignore_errors=True)
    extra.mkdir(parents=True)
    batches = []
    for b in range(adds):
        folder = extra / f"batch{b:03d}"
        folder.mkdir()
        for j, pic in enumerate(ex.generated_pictures(per_add, seed=100 + b)):
            pic.save(folder / f"{b + 100:04d}_c{j % 6 + 1}s2_{b:06d}_{j:02d}.jpg")
        batches.append(folder)
    engine = OnnxEngine(fx.model)
    paths = collect_images([fx.old_images, *batches])
    embs = engine.embed([str(p) for p in paths])["global_feat"]
    embeddings = {str(p.resolve()): e.tolist() for p, e in zip(paths, embs, strict=True)}
    g = build_index(engine, [fx.old_images], d, progress=False)
    # the committed galleries: the old images, then one more batch per add (items are appended in order)
    valid: dict[str, int] = {}
    items = [[it["path"], it.get("pid"), it.get("camera")] for it in g.items]
    valid[sha_of(items)] = len(items)
    for folder in batches:
        for p in collect_images([folder]):
            pid, cam = (int(p.name.split("_")[0]), int(p.name.split("_c")[1][0]))
            items = items + [[str(p.resolve()), pid, cam]]
        valid[sha_of(items)] = len(items)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    stop, q = ctx.Event(), ctx.Queue()
    procs, readies = [], []
    for r in range(readers):
        ready = ctx.Event()
        p = ctx.Process(target=_reader, args=(str(d), embeddings, valid, stop, ready, seed + r, q), daemon=True)
        p.start()
        procs.append(p)
        readies.append(ready)
    for ready in readies:
        ready.wait(300)
    t_adds = time.perf_counter()
    committed = 0
    for folder in batches:
        _, n, _ = add_to_index(d, [folder], model=engine, progress=False)
        committed += n > 0
    add_seconds = time.perf_counter() - t_adds
    time.sleep(0.2)
    stop.set()
    results = [q.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(60)
    final = index_state(d)
    return {"adds": adds, "per_add": per_add, "readers": readers, "committed": committed,
            "add_seconds": round(add_seconds, 2), "final_count": final.count,
            "loads": sum(r["loads"] for r in results), "errors": sum(r["errors"] for r in results),
            "retries": sum(r["retries"] for r in results), "problems": sum(r["n_problems"] for r in results),
            "examples": [p for r in results for p in r["error_examples"] + r["problems"]][:10],
            "states_seen": max(r["states"] for r in results),
            "monotonic": all(r["monotonic"] for r in results), "seconds": round(time.perf_counter() - t_start, 1)}


# ------------------------------------------------------------------------------------------- full disk
def _fill(mnt: Path, free: int) -> None:
    """Leave about ``free`` bytes free on the filesystem of ``mnt`` (a filler file)."""
    st = os.statvfs(mnt)
    avail = st.f_bavail * st.f_frsize
    if avail > free:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.posix_fallocate(fd, 0, avail - free)
        finally:
            os.close(fd)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _in_process(module: str, argv: list[str]) -> tuple[int, str]:
    import importlib

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = importlib.import_module(module).main(argv)
        except Exception as exc:  # an uncaught exception is a traceback for the user: not a clear error
            rc = 99
            err.write(f"UNCAUGHT {type(exc).__name__}: {exc}")
    return rc, (err.getvalue() + out.getvalue()).strip()


def disk_full_cases(fx: Fixture, place: Path, method: str, index_free: Sequence[int],
                    export_free: Sequence[int]) -> list[dict[str, Any]]:
    """Run the cases with the artefacts on ``place`` (a small tmpfs, or any folder with ``method='rlimit'``):
    for each free-space budget, put the old artefact there, leave that much space (tmpfs) or cap the file size
    (rlimit), run the command in this process and record its exit code, message and the artefact's state."""
    from serving.export import variant_path
    from serving.index import build_index

    ref = place.parent / f".{place.name}-refs"
    shutil.rmtree(ref, ignore_errors=True)
    ref.mkdir()
    old_index = ref / "old-index"
    build_index(fx.model, [fx.old_images], old_index, progress=False)
    old_index_key = index_state(old_index).key
    old_export_key = export_state(fx.model, fx.precisions).key
    cases = []
    plan = [("add", b) for b in index_free] + [("build", b) for b in index_free] + [("export", b) for b in export_free]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    if method == "rlimit":  # a write past the limit then fails with EFBIG instead of killing the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for op, budget in plan:
        for p in place.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        if op == "add":
            target = place / "index"
            shutil.copytree(old_index, target)
            module, argv = "serving.index", ["add", "--index", str(target), "--images", str(fx.new_images),
                                             "--no-progress"]
        elif op == "build":
            target = place / "index"
            module, argv = "serving.index", ["build", "--model", str(fx.model), "--images", str(fx.old_images),
                                             str(fx.new_images), "--out", str(target), "--no-progress"]
        else:
            target = place / "model.onnx"
            for p, src in zip(fx.precisions, fx.model_files, strict=True):
                shutil.copyfile(src, variant_path(target, p))
            flags = [a for p in fx.precisions if p != "fp32" for a in (["--fp16"] if p == "fp16" else [])]
            flags += [] if "int8-static" in fx.precisions else ["--no-int8"]  # written by default otherwise
            module, argv = "serving.export", ["--checkpoint", str(fx.ckpt_new), "--out", str(target), *flags]
        if method == "tmpfs":
            _fill(place, budget)
            free = _free_bytes(place)
        else:
            free = budget
            resource.setrlimit(resource.RLIMIT_FSIZE, (budget, hard))
        try:
            rc, msg = _in_process(module, argv)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        (place / "filler").unlink(missing_ok=True)
        if op == "export":
            st = export_state(target, fx.precisions)
            old_key = old_export_key
        else:
            st = index_state(target)
            old_key = old_index_key if op == "add" else ""
        state = ("old" if (st.kind == "absent" and old_key == "") or (st.kind == "ok" and st.key == old_key)
                 else "new" if rc == 0 and st.kind == "ok" else f"broken ({st.kind}: {st.detail[:120]})")
        stray = sorted(str(p.relative_to(place)) for p in place.rglob(".*"))
        clear = rc != 0 and rc != 99 and str(place) in msg and any(
            s in msg for s in ("No space left", "File too large"))
        cases.append({"op": op, "free_bytes": free, "rc": rc, "state": state, "clear_error": clear,
                      "message": msg.splitlines()[-1][:400] if msg else "", "stray": stray})
    shutil.rmtree(ref, ignore_errors=True)
    return cases


def _disk_full_worker(spec_json: str) -> None:
    """Inside ``unshare -m``: mount a small tmpfs, run the cases, print them as JSON (last line)."""
    spec = json.loads(spec_json)
    fx = Fixture(**{k: (Path(v) if k in ("root", "ckpt_old", "ckpt_new", "model", "old_images", "new_images")
                        else tuple(v)) for k, v in spec["fixture"].items()})
    mnt = Path(spec["mnt"])
    mnt.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={spec['size']}", "tmpfs", str(mnt)], check=True)
    try:
        cases = disk_full_cases(fx, mnt, "tmpfs", spec["index_free"], spec["export_free"])
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    print(json.dumps(cases))


def _tmpfs_command() -> list[str] | None:
    """How to get a private mount namespace in which mounting a tmpfs works, or None."""
    if shutil.which("unshare") is None:
        return None
    for cmd in (["unshare", "-m", "--propagation", "private"], ["unshare", "-Urm", "--propagation", "private"]):
        try:
            probe = subprocess.run([*cmd, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d "
                                    "&& umount $d && rmdir $d"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cmd
    return None


def disk_full(fx: Fixture, work: Path, method: str = "auto", index_free: Sequence[int] | None = None,
              export_free: Sequence[int] | None = None) -> dict[str, Any]:
    """Full-disk cases on a small tmpfs (``method='tmpfs'``, in a private mount namespace) or with RLIMIT_FSIZE
    (``'rlimit'``); ``auto`` takes the tmpfs when it can be mounted."""
    t_start = time.perf_counter()
    model_size = sum(f.stat().st_size for f in fx.model_files)
    index_free = list(index_free if index_free is not None else range(0, 72 * 1024, 8 * 1024))
    export_free = list(export_free if export_free is not None
                       else [0, 1 << 20, model_size // 2, model_size - 4096, model_size + (1 << 20)])
    cmd = _tmpfs_command() if method in ("auto", "tmpfs") else None
    if method == "tmpfs" and cmd is None:
        raise RuntimeError("a tmpfs cannot be mounted here (no unshare, or mount not permitted)")
    place = work / "disk"
    shutil.rmtree(place, ignore_errors=True)
    place.mkdir(parents=True)
    if cmd is not None:
        spec = {"fixture": {k: (str(v) if isinstance(v, Path) else list(v))
                            for k, v in dataclasses.asdict(fx).items()},
                "mnt": str(place), "size": 2 * model_size + (8 << 20), "index_free": index_free,
                "export_free": export_free}
        proc = subprocess.run([*cmd, sys.executable, "-m", "benchmarks.bench_faults", "--disk-full-worker",
                               json.dumps(spec)], capture_output=True, text=True, cwd=ROOT, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"disk-full worker failed: {proc.stderr[-2000:]}")
        cases = json.loads(proc.stdout.strip().splitlines()[-1])
        used = f"tmpfs of {spec['size'] >> 20} MiB in a private mount namespace (`{' '.join(cmd)}`)"
    else:
        sizes = [max(b, 4096) for b in index_free]
        cases = disk_full_cases(fx, place, "rlimit", sizes, [max(b, 4096) for b in export_free])
        used = "RLIMIT_FSIZE (writes past the limit fail with EFBIG; SIGXFSZ ignored)"
    return {"method": used, "cases": cases, "seconds": round(time.perf_counter() - t_start, 1)}

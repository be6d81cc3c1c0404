"""Load and soak (issue 21, section 2): ``Retriever.search`` from many threads, the Gradio app through its HTTP API,
and a soak at constant load, each bounded (a request count or a duration) so that it stops by itself. Writes
``docs/bench/load.md``.

    python -m benchmarks.bench_load [--mode threads http soak] [--gallery 20000] [--clients 1 8 32] \
        [--requests 320] [--http-requests 160] [--app-concurrency 1 4] [--minutes 10] [--images MARKET_ROOT] \
        [--workdir DIR] [--json RAW.json] [--out docs/bench/load.md]
    python -m benchmarks.bench_load --from-json RAW.json   # only re-render the report

Gallery (``--gallery`` N items): the real embeddings of ``--base`` M images (gallery images of ``--images``, a
Market-layout root, spread over it; else synthetic pedestrians rendered by :func:`serving.export.rendered_pictures`)
plus N - M noise-augmented replicas of them (:func:`benchmarks.bench_serving.replicas`: ``normalize(e + n)``, ``n``
Gaussian of norm ``--replica-noise``); a replica is an item naming its source image, so the app can render it.
Built with :func:`serving.index.build_index`, then :meth:`GalleryIndex.add` and ``save``; reused from
``--workdir`` when the recipe matches. Model: ``--model`` (an exported ONNX file) or a random-weight resnet18
SCWMNet at ``--height`` x ``--width`` whose BatchNorm statistics come from 32 gallery images
(:func:`serving.app.demo.untrained_model`), exported by :func:`serving.export.export_model` (verified against
PyTorch). Queries: ``--queries`` images not in the gallery (the root's ``query/`` folder, or more rendered
pedestrians); top ``--k``.

Serial answers: each query once, one at a time, through ``Retriever.search`` in this process. Every answer under
load must equal the serial answer of its query: the same item ids in the same order, scores within 1e-5
(:func:`benchmarks.load_clients.compare`).

- ``threads``: one shared ``Retriever`` (ONNX Runtime with ``--ort-threads`` intra-op threads); for each C in
  ``--clients``, C threads send ``search(path, k)`` back to back (closed loop), ceil(``--requests`` / C) each.
- ``http``: ``python app.py`` in a child process on 127.0.0.1 (a free port, ``--threads --ort-threads``), driven by C
  asyncio clients (httpx) through Gradio's HTTP API: upload the query file, ``POST /gradio_api/call/search``, read
  the result stream (:class:`benchmarks.load_clients.AppClient`); ceil(``--http-requests`` / C) requests each, after
  one serial pass over the queries (checked against the in-process serial answers; it also warms the app's parse
  cache). A search is the app's whole work: the query's hits and part map, the hits' part maps, rendered tiles; the
  Market protocol is off, so the hits are ``Retriever.query``'s. One server per ``--app-concurrency`` value, which
  sets ``GRADIO_DEFAULT_CONCURRENCY_LIMIT`` (1, Gradio's default, runs one search at a time, as ``python app.py``
  does). The CPU time of the app's handler alone (in this process) is measured too (:func:`handler_cpu`).
- ``soak``: ``--soak-clients`` clients against the app (the first ``--app-concurrency``; ``--soak-target threads``:
  against ``Retriever`` in this process) for ``--minutes``; RSS, threads and open files of the serving process
  sampled every second; per-window latency; RSS growth from the end of the first window; RSS slopes over the second
  half (per minute, per 1000 requests); leak = the fitted growth over the second half exceeds ``--leak-mb`` or the
  growth per 1000 requests exceeds ``--leak-mb-per-1000`` (``load_clients.rss_trend``); the p50
  drift from the first to the last window (:func:`benchmarks.load_clients.soak`).

Throughput = answered requests / wall time of the level; latency = from sending a request to its complete answer
(HTTP: upload + call + result stream). Exit code 1 if any request failed, differed from the serial answer, or the
soak saw a leak.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from benchmarks import load_clients as lc
from benchmarks.load_report import NOTES_HEADING, load_average, machine, notes, render
from scwm.utils import atomic_write_bytes

__all__ = ["NOTES_HEADING", "failed", "handler_cpu", "main", "parse_args", "prepare", "render", "run"]

RECIPE = "load-gallery.json"


# -------------------------------------------------------------------------------------------- the workload
def _write_pictures(folder: Path, n: int, seed: int, first_pid: int) -> list[Path]:
    from serving.export import rendered_pictures

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, pic in enumerate(tqdm(rendered_pictures(n, seed=seed), desc=f"writing {folder.name}", unit="img")):
        p = folder / f"{first_pid + i // 4:04d}_c{i % 6 + 1}s1_{i:06d}_00.jpg"
        pic.save(p, quality=95)
        out.append(p)
    return out


def _spread(paths: Sequence[Path], n: int) -> list[Path]:
    if n >= len(paths):
        return list(paths)
    return [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, n).round().astype(int))]


def prepare(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Images, model and gallery index in ``work`` (reused when ``work/load-gallery.json`` has the same recipe)."""
    from benchmarks.bench_serving import replicas
    from serving import export as ex
    from serving.engine import OnnxEngine
    from serving.index import MANIFEST, build_index, collect_images

    recipe = {k: getattr(args, k) for k in ("gallery", "base", "queries", "images", "model", "height", "width",
                                            "replica_noise", "seed")}
    index_dir, model = work / "index", Path(args.model) if args.model else work / "model.onnx"
    t0 = time.perf_counter()
    if args.images:
        root = Path(args.images)
        every = collect_images([root])
        base = _spread(every, args.base)
        queries = _spread(sorted((root / "query").glob("*.jpg")), args.queries)
        images = f"{len(base)} of the {len(every)} gallery images of `{root.name}` (evenly spaced)"
    else:
        base = sorted((work / "images/bounding_box_test").glob("*.jpg"))
        queries = sorted((work / "images/query").glob("*.jpg"))
        if len(base) != args.base or len(queries) != args.queries:
            shutil.rmtree(work / "images", ignore_errors=True)
            base = _write_pictures(work / "images/bounding_box_test", args.base, args.seed, 1)
            queries = _write_pictures(work / "images/query", args.queries, args.seed + 1, 5001)
        images = f"{len(base)} synthetic pedestrians rendered by `serving.export.rendered_pictures`"
    old = json.loads((work / RECIPE).read_text()) if (work / RECIPE).is_file() else None
    reuse = old is not None and old.get("recipe") == recipe and (index_dir / MANIFEST).is_file() and model.is_file()
    if not reuse:
        if not args.model:
            from scwm.models import ModelSpec
            from serving.app.demo import untrained_model

            spec = ModelSpec(backbone="resnet18", num_parts=4, height=args.height, width=args.width)
            ex.export_model(untrained_model(spec, base[:32]), spec, model, source="untrained-load-bench",
                            config={"bench": "load: random weights, BatchNorm statistics from 32 gallery images"})
        engine = OnnxEngine(model, providers=["CPUExecutionProvider"], intra_op_threads=args.ort_threads)
        g = build_index(engine, base, index_dir, overwrite=(index_dir / MANIFEST).is_file())
        if args.gallery > g.count:
            real = g.cpu_index.reconstruct_n(0, g.count)
            n_extra = args.gallery - g.count
            paths = [Path(g.items[i % g.count]["path"]) for i in range(n_extra)]
            g.add(replicas(real, n_extra, args.replica_noise, args.seed), paths)
            g.save(index_dir)
        atomic_write_bytes(work / RECIPE, json.dumps({"recipe": recipe, "build_s": time.perf_counter() - t0,
                                                      "count": g.count}).encode())
    info = json.loads((work / RECIPE).read_text())
    if args.model:
        model_desc = f"`{model.name}` (given)"
    else:
        model_desc = (f"random-weight resnet18 SCWMNet at {args.height}x{args.width} (BatchNorm statistics from 32 "
                      "gallery images; no trained model is needed to measure load)")
    return {"index": index_dir, "model": model, "queries": queries, "base": len(base), "count": info["count"],
            "images": images, "model_desc": model_desc, "build_s": info["build_s"], "reused": reuse}


# ---------------------------------------------------------------------------------------------- the runs
def _levels(run_level: Any, clients: Sequence[int], requests: int, max_seconds: float, pid: int,
            ) -> list[dict[str, Any]]:
    """One row per client count; ``pid`` is the serving process, whose CPU time per request and RSS after the level
    are recorded (CPU time does not depend on what else runs on the machine)."""
    rows = []
    for c in clients:
        per = math.ceil(requests / c)
        before = lc.proc_stats(pid)
        samples, wall, ref = run_level(c, per, time.perf_counter() + max_seconds)
        after = lc.proc_stats(pid)
        r = {"clients": c, **lc.summarize(samples, ref, wall, planned=per * c), "rss_mb": after["rss_mb"],
             "load": load_average()}
        r["cpu_ms_per_request"] = 1000 * (after["cpu_s"] - before["cpu_s"]) / max(1, r["requests"])
        rows.append(r)
        print(f"  {c} clients: {r['requests']} requests, {r['throughput']:.2f} req/s, p50 {r['p50_ms']:.0f} ms, "
              f"errors {r['errors']}, differ {r['mismatches']}, CPU {r['cpu_ms_per_request']:.0f} ms/req", flush=True)
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Prepare the workload, run the chosen modes, return the results (what :func:`render` writes)."""
    from serving.retriever import Retriever

    t_start = time.perf_counter()
    res: dict[str, Any] = {"command": _command(args), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
                           "load_start": load_average(), "modes": list(args.mode), "k": args.k}
    with contextlib.ExitStack() as stack:
        work = Path(args.workdir) if args.workdir else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="scwm-load-")))
        work.mkdir(parents=True, exist_ok=True)
        w = prepare(args, work)
        res["workload"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in w.items() if k != "queries"}
        res["workload"]["queries"] = len(w["queries"])
        queries = w["queries"]
        retriever = Retriever.load(w["index"], w["model"], providers=["CPUExecutionProvider"],
                                   intra_op_threads=args.ort_threads)

        def search(q: int) -> lc.Answer:
            return lc.answer_of(retriever.search(queries[q], args.k))

        t0, cpu0 = time.perf_counter(), time.process_time()
        ref = [search(q) for q in tqdm(range(len(queries)), desc="serial answers", unit="query")]
        res["serial_s"] = time.perf_counter() - t0
        res["serial_cpu_ms"] = 1000 * (time.process_time() - cpu0) / len(queries)
        again = [search(q) for q in range(len(queries))]
        res["serial_repeatable"] = sum(lc.compare(a, b) is None for a, b in zip(again, ref, strict=True))
        if "threads" in args.mode:
            print("threads:", flush=True)
            res["threads"] = _levels(lambda c, per, stop: (*lc.run_threads(
                search, len(queries), c, per, stop, desc=f"threads x{c}", progress=args.progress), ref),
                args.clients, args.requests, args.max_level_seconds, os.getpid())
        servers: list[tuple[lc.AppServer, dict[str, Any]]] = []

        def serve(concurrency: int) -> tuple[lc.AppServer, dict[str, Any]]:
            t0 = time.perf_counter()
            server = lc.start_app(w["index"], work, args.ort_threads, concurrency,
                                  app_args=shlex.split(args.app_args))
            stack.callback(server.stop)
            servers.append((server, {"concurrency": concurrency, "app_args": args.app_args,
                                     "start_s": time.perf_counter() - t0,
                                     "rss_idle_mb": lc.proc_stats(server.pid)["rss_mb"]}))
            return servers[-1]

        if "http" in args.mode:
            res["handler"] = handler_cpu(w["index"], w["model"], queries, args.k, args.ort_threads, work)
            res["http"] = []
            for i, conc in enumerate(args.app_concurrency):
                print(f"http, concurrency limit {conc}:", flush=True)
                server, info = serve(conc)
                out = _http(args, server, queries, ref)
                res["http"].append({"app": {**info, "rss_end_mb": lc.proc_stats(server.pid)["rss_mb"]}, **out})
                if i > 0 or "soak" not in args.mode or args.soak_target != "http":
                    res["http"][-1]["app"]["exit_code"] = server.stop()
        if "soak" in args.mode:
            print(f"soak ({args.soak_target}, {args.soak_clients} clients, {args.minutes} min):", flush=True)
            if args.soak_target == "http":
                server, info = servers[0] if servers else serve(args.app_concurrency[0])
                client = lc.AppClient(server.url, k=args.k)
                pid, temp = server.pid, server.temp_dir

                def drive(stop: float) -> tuple[list[lc.Sample], float]:
                    return lc.run_http(client, queries, args.soak_clients, stop_at=stop, timeout=args.timeout,
                                       desc="soak", progress=args.progress)
            else:
                pid, temp, info = os.getpid(), None, None

                def drive(stop: float) -> tuple[list[lc.Sample], float]:
                    return lc.run_threads(search, len(queries), args.soak_clients, stop_at=stop, desc="soak",
                                          progress=args.progress)
            res["soak"] = lc.soak(drive, pid, args.minutes * 60, ref, args.windows, temp_dir=temp,
                                  leak_mb=args.leak_mb, leak_mb_per_1000=args.leak_mb_per_1000)
            res["soak"].update(target=args.soak_target, clients=args.soak_clients, app=info, command=res["command"],
                               date=res["date"])
            s = res["soak"]
            print(f"  {s['requests']} requests, errors {s['errors']}, differ {s['mismatches']}, RSS "
                  f"{s['rss_first_window_mb']:.0f} -> {s['rss_end_mb']:.0f} MB, p50 drift {s['p50_drift']}", flush=True)
            if info is not None:
                info["rss_end_mb"] = lc.proc_stats(pid)["rss_mb"]
                info["exit_code"] = server.stop()
    res["load_end"] = load_average()
    res["total_s"] = time.perf_counter() - t_start
    return res


def _http(args: argparse.Namespace, server: lc.AppServer, queries: list[Path], ref: list[lc.Answer],
          ) -> dict[str, Any]:
    """A serial pass (warms the app's parse cache), then the levels, against one app server."""
    client = lc.AppClient(server.url, k=args.k)
    cpu0 = lc.proc_stats(server.pid)["cpu_s"]
    samples, wall = lc.run_http(client, queries, 1, len(queries), desc="http serial", progress=args.progress)
    serial = lc.summarize(samples, ref, wall, planned=len(queries))
    serial["cpu_ms_per_request"] = 1000 * (lc.proc_stats(server.pid)["cpu_s"] - cpu0) / max(1, len(samples))
    levels = _levels(lambda c, per, stop: (*lc.run_http(
        client, queries, c, per, stop, args.timeout, desc=f"http x{c}", progress=args.progress), ref),
        args.clients, args.http_requests, args.max_level_seconds, server.pid)
    return {"serial": serial, "levels": levels}


def handler_cpu(index: Path, model: Path, queries: Sequence[Path], k: int, threads: int, work: Path,
                reps: int = 2) -> dict[str, float]:
    """CPU ms per search of the app's handler run in this process, one thread, warm parse cache: ``run_search``
    (``query``: its ``Retriever.query``, the rest: hit images, cached part maps, tiles) and the PNG encoding of its
    output images (which Gradio does when it saves them to its cache). The difference to the app's CPU per request
    over HTTP is Gradio's own work (upload, queue, pre/postprocessing, event stream)."""
    from serving.app.session import AppState, run_search

    state = AppState(work, index, model, ["CPUExecutionProvider"], threads)
    assert state.retriever is not None, state.error
    for q in queries:
        run_search(state, str(q), k, "Overlay", 0.55, False)
    t_query = t_handler = t_png = 0.0
    for _ in range(reps):
        for q in queries:
            c0 = time.thread_time()
            state.retriever.query(str(q), k)
            c1 = time.thread_time()
            r = run_search(state, str(q), k, "Overlay", 0.55, False)
            c2 = time.thread_time()
            for im in [r.query_view, *(tile for tile, _ in r.tiles)]:
                im.save(io.BytesIO(), format="png")
            c3 = time.thread_time()
            t_query, t_handler, t_png = t_query + c1 - c0, t_handler + c2 - c1, t_png + c3 - c2
    n = reps * len(queries)
    return {"searches": n, "query_ms": 1000 * t_query / n, "handler_ms": 1000 * t_handler / n,
            "png_ms": 1000 * t_png / n}


def failed(res: dict[str, Any]) -> bool:
    """Whether any request failed or differed from its serial answer, or the soak saw a leak."""
    rows = res.get("threads", []) + [r for e in res.get("http", []) for r in [e["serial"], *e["levels"]]]
    soak = res.get("soak")
    return (any(r["errors"] or r["mismatches"] or r["requests"] < (r["planned"] or 0) for r in rows)
            or bool(soak and (soak["errors"] or soak["mismatches"] or soak["leak"])))


def _command(args: argparse.Namespace) -> str:
    argv = args.argv if args.argv is not None else sys.argv[1:]
    return "python -m benchmarks.bench_load " + shlex.join(argv)


# ------------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", nargs="+", choices=["threads", "http", "soak"], default=["threads", "http", "soak"])
    ap.add_argument("--gallery", type=int, default=20_000, help="gallery items (default: %(default)s)")
    ap.add_argument("--base", type=int, default=512, help="real images embedded; the rest are their replicas")
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--images", help="a Market-layout root (default: render synthetic pedestrians)")
    ap.add_argument("--model", help="an exported ONNX model (default: a random-weight resnet18)")
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--replica-noise", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=320, help="requests per level, threads mode")
    ap.add_argument("--http-requests", type=int, default=160, help="requests per level, http mode")
    ap.add_argument("--max-level-seconds", type=float, default=3 * 3600, help="a level stops sending after this")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds before an HTTP request is an error")
    ap.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime intra-op threads (in process and app)")
    ap.add_argument("--app-concurrency", type=int, nargs="+", default=[1],
                    help="GRADIO_DEFAULT_CONCURRENCY_LIMIT of the app; one server (and table) per value (default: 1, "
                         "Gradio's default); the soak uses the first")
    ap.add_argument("--app-args", default="",
                    help="extra arguments of `python app.py`, one string, e.g. \"--malloc-arenas 0\" (default: none)")
    ap.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--soak-target", choices=["http", "threads"], default="http")
    ap.add_argument("--windows", type=int, default=10, help="soak windows")
    ap.add_argument("--leak-mb", type=float, default=lc.LEAK_MB,
                    help="soak: fitted RSS growth over the second half that is a leak (default: %(default)s)")
    ap.add_argument("--leak-mb-per-1000", type=float, default=lc.LEAK_MB_PER_1000,
                    help="soak: fitted RSS growth per 1000 requests over the second half that is a leak "
                         "(default: %(default)s)")
    ap.add_argument("--workdir", help="keep (and reuse) the images, model and index here")
    ap.add_argument("--out", default="docs/bench/load.md")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--from-json", help="only render the report from results written by --json")
    ap.add_argument("--notes", help="markdown file used as the last section (default: kept from --out)")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else None
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.from_json:
        res = json.loads(Path(args.from_json).read_text())
    else:
        res = run(args)
        if args.json:
            atomic_write_bytes(args.json, json.dumps(res, indent=1, default=str).encode())
    res["notes"] = notes(args.notes, out)
    atomic_write_bytes(out, render(res).encode())
    print(f"wrote {out}")
    return 1 if failed(res) else 0


if __name__ == "__main__":
    raise SystemExit(main())

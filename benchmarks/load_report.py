"""The Markdown report of the load benchmark (``benchmarks/bench_load.py``, whose docstring describes the method):
the machine, the tables of the threads and HTTP levels and of the soak, and the hand-written notes section."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.host import cpu_model, load_average, ram_gib

__all__ = ["LEVEL_HEADER", "NOTES_HEADING", "machine", "load_average", "render", "notes"]

NOTES_HEADING = "## What the runs found"


def machine() -> str:
    """CPU model and flags, cores, RAM, OS and the versions that matter, niceness and ``OMP_NUM_THREADS``."""
    import faiss
    import gradio
    import httpx
    import onnxruntime as ort

    cpu, flags = cpu_model()
    mem = ram_gib()
    return (f"{os.cpu_count()} CPU cores ({cpu}; {flags}), {mem:.0f} GiB RAM, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, onnxruntime {ort.__version__}, faiss "
            f"{faiss.__version__}, gradio {gradio.__version__}, httpx {httpx.__version__}, numpy {np.__version__}; "
            f"niceness {os.nice(0)}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def _f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


LEVEL_HEADER = ("| clients | requests | wall s | throughput req/s | p50 ms | p95 ms | p99 ms | max ms | errors | "
                "equal to serial | CPU ms / request | RSS MB after | load average |")


def _level_table(rows: list[dict[str, Any]]) -> list[str]:
    out = [LEVEL_HEADER, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['clients']} | {r['requests']} | {_f(r['wall_s'], 1)} | {_f(r['throughput'], 2)} | "
                   f"{_f(r['p50_ms'])} | {_f(r['p95_ms'])} | {_f(r['p99_ms'])} | {_f(r['max_ms'])} | "
                   f"**{r['errors']}** | {r['equal']} / {r['requests']} | {_f(r['cpu_ms_per_request'])} | "
                   f"{_f(r['rss_mb'])} | {r['load']} |")
    for r in rows:
        for ex in r["error_examples"] + r["mismatch_examples"]:
            out.append(f"\n- {r['clients']} clients: {ex}")
    return out


def render(res: dict[str, Any]) -> str:
    """The Markdown report of :func:`run`'s results."""
    w = res["workload"]
    lines = ["# Load and soak: `Retriever.search` from threads, the app over HTTP", "",
             f"Command: `nice -n 19 env OMP_NUM_THREADS=1 {res['command']}` ({res['date']}, {res['total_s'] / 60:.0f} "
             "min in all). Written by `benchmarks/bench_load.py`, whose docstring describes the method; the CI runs "
             "the same code at a small size in `tests/test_load.py`.", "",
             f"Machine: {res['machine']}. Load average at the start {res['load_start']}, at the end {res['load_end']}.",
             "",
             f"Gallery: {w['count']:,} items = the real embeddings of {w['images']} + {w['count'] - w['base']:,} "
             f"noise-augmented replicas of them (`normalize(e + n)`, each replica an item that names its source "
             f"image); exact search (FAISS `IndexFlatIP`). Model: {w['model_desc']}. {w['queries']} query images "
             f"not in the gallery, top {res['k']}. Build: {w['build_s']:.0f} s"
             f"{' (reused from the work directory)' if w['reused'] else ''}. Serial answers (one query at a time, "
             f"in process): {res['serial_s']:.1f} s for {w['queries']} ({res['serial_cpu_ms']:.0f} ms of CPU per "
             f"query); a second serial pass gave the same answers for {res['serial_repeatable']} / {w['queries']}.", "",
             "Every answer under load is compared with the serial answer of its query: same item ids in the same "
             "order, scores within 1e-5. Clients are closed loops (a client sends its next request when the last "
             "one is answered); each level sends a fixed number of requests and stops. CPU ms / request: CPU time "
             "(user + system) the serving process used during the level, per request; unlike the latencies it does "
             "not depend on what else runs on the machine. RSS: of the serving process after the level.", ""]
    if "threads" in res:
        lines += ["## 1. `Retriever.search` from threads", "",
                  "One shared `Retriever` (ONNX Runtime, CPU, 1 intra-op thread per call); each request is "
                  "`search(path, k)`: JPEG decode, preprocessing, the model, exact search.", ""]
        lines += _level_table(res["threads"]) + [""]
    if "http" in res:
        h = res["handler"]
        lines += ["## 2. The app through its HTTP API", "",
                  "`python app.py --index ... --threads 1` in a child process on 127.0.0.1 (Gradio's files in a "
                  "temporary folder), driven by asyncio clients (httpx, one connection pool) through Gradio's "
                  "documented HTTP API: `POST /gradio_api/upload` (the query file), `POST /gradio_api/call/search` "
                  "(-> event id), `GET /gradio_api/call/search/{event_id}` (the result stream, `event: complete`). A "
                  "request is the app's whole search: the query's hits and part map, the hits' part maps (cached), "
                  "11 tiles rendered and saved as PNG; Market protocol off. Latency covers the three HTTP calls. "
                  "Concurrency limit = `GRADIO_DEFAULT_CONCURRENCY_LIMIT`, how many searches the app runs at once "
                  "(Gradio's default, and `python app.py`'s, is 1; the others wait in its queue).", "",
                  "The app's search handler alone (`serving.app.session.run_search`, in this process, one thread, "
                  f"warm parse cache, {h['searches']} searches): {h['handler_ms']:.0f} ms of CPU per search, of which "
                  f"`Retriever.query` {h['query_ms']:.0f} ms; PNG encoding of its 11 output images "
                  f"{h['png_ms']:.0f} ms more.", ""]
        for e in res["http"]:
            a, s = e["app"], e["serial"]
            lines += [f"### Concurrency limit {a['concurrency']}", "",
                      f"App started in {a['start_s']:.0f} s; RSS {a['rss_idle_mb']:.0f} MB idle, "
                      f"{_f(a.get('rss_end_mb'))} MB after the levels. Serial pass first (1 client, each query "
                      f"once; warms the parse cache): {s['requests']} requests, p50 {_f(s['p50_ms'])} ms, "
                      f"{_f(s['cpu_ms_per_request'])} ms of the app's CPU per request, errors **{s['errors']}**, "
                      f"equal to the in-process serial answers {s['equal']} / {s['requests']}.", ""]
            lines += _level_table(e["levels"]) + [""]
    if "soak" in res:
        s = res["soak"]
        flags = f", `{s['app']['app_args']}`" if s["target"] == "http" and s["app"].get("app_args") else ""
        where = (f"the app (concurrency limit {s['app']['concurrency']}{flags}) over HTTP" if s["target"] == "http"
                 else "`Retriever` in this process, from threads")
        span = f"{s['seconds'] / 60:g} minutes" if s["seconds"] >= 60 else f"{s['seconds']:g} seconds"
        own = (f"Run on its own ({s['date']}): `nice -n 19 env OMP_NUM_THREADS=1 {s['command']}`. "
               if s.get("command") and s["command"] != res["command"] else "")
        lines += [f"## 3. Soak: {span} at constant load", "",
                  f"{own}{s['clients']} closed-loop clients against {where}; RSS, threads and open files of the "
                  f"serving process sampled every second ({s['samples']} samples). RSS growth is taken from the end of "
                  "the first window (after the warm-up) to the end. The slopes are those of the RSS floor over the "
                  "second half (the lowest sample of each of 10 time blocks, against time and against answered "
                  "requests; a search holds tens of MB for a moment, a leak raises the floor); leak = the floor "
                  f"grows by more than {s['leak_mb']:g} MB over the second half, or by more than "
                  f"{s.get('leak_mb_per_1000', 2.0):g} MB per 1000 requests and by more than 3 standard errors of "
                  "that slope (`benchmarks.load_clients.rss_trend`).", "", "| measure | value |",
                  "|---|---|",
                  f"| requests, errors, equal to serial | {s['requests']}, **{s['errors']}**, {s['equal']} / "
                  f"{s['requests']} |",
                  f"| throughput | {_f(s['throughput'], 2)} req/s |",
                  f"| latency p50 / p95 / p99 | {_f(s['p50_ms'])} / {_f(s['p95_ms'])} / {_f(s['p99_ms'])} ms |",
                  f"| p50 first -> last window (drift) | {_f(s['p50_first_ms'])} -> {_f(s['p50_last_ms'])} ms "
                  f"(x{_f(s['p50_drift'], 2)}) |",
                  f"| RSS before / after window 1 / end / max | {s['rss_before_mb']:.0f} / "
                  f"{s['rss_first_window_mb']:.0f} / {s['rss_end_mb']:.0f} / {s['rss_max_mb']:.0f} MB |",
                  f"| RSS growth from the end of window 1 | {s['rss_growth_mb']:+.1f} MB |",
                  f"| RSS floor slope over the second half | {s['rss_slope_mb_per_min']:+.2f} MB/min, "
                  f"{s.get('rss_mb_per_1000_requests', 0.0):+.1f} ± "
                  f"{s.get('rss_mb_per_1000_requests_se', 0.0):.1f} MB per 1000 requests |",
                  f"| leak (fitted growth over the second half > {s['leak_mb']:g} MB, or > "
                  f"{s.get('leak_mb_per_1000', 2.0):g} MB per 1000 requests) | "
                  f"{'**yes**' if s['leak'] else 'no'} ({s['rss_second_half_growth_mb']:+.1f} MB) |",
                  f"| threads, open files | {s['threads_before']:.0f} -> {s['threads_end']:.0f}, "
                  f"{s['fds_before']:.0f} -> {s['fds_end']:.0f} |",
                  f"| CPU of the serving process per request | {_f(s['cpu_ms_per_request'])} ms |"]
        if s["target"] == "http":
            tb, te = s["temp_before"], s["temp_end"]
            lines += [f"| Gradio's temporary folder (uploads, rendered tiles) | {tb['files']} files, "
                      f"{tb['bytes'] / 1e6:.1f} MB before; {te['files']}, {te['bytes'] / 1e6:.1f} MB after |"]
        lines += ["", "| window | until s | requests | errors | differ | p50 ms | p95 ms | RSS MB | threads | "
                  "open files |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in s["windows"]:
            lines.append(f"| {r['window']} | {r['t_end_s']:.0f} | {r['requests']} | {r['errors']} | {r['mismatches']} "
                         f"| {_f(r['p50_ms'])} | {_f(r['p95_ms'])} | {r['rss_mb']:.1f} | {r['threads']:.0f} | "
                         f"{r['fds']:.0f} |")
        for ex in s["error_examples"] + s["mismatch_examples"]:
            lines.append(f"\n- soak: {ex}")
    lines += ["", NOTES_HEADING, ""] + res.get("notes", [])
    return "\n".join(lines) + "\n"


def notes(path: str | None, out: Path) -> list[str]:
    """The hand-written last section: from ``path`` if given, else kept from the report being replaced."""
    if path:
        return Path(path).read_text().splitlines()
    if out.is_file() and NOTES_HEADING in out.read_text():
        return out.read_text().split(NOTES_HEADING, 1)[1].strip("\n").splitlines()
    return []

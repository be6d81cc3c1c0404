"""Load-test harness (docs in ``benchmarks/bench_load.py``): bounded closed-loop clients for ``Retriever.search``
(threads) and for the Gradio app's HTTP API (asyncio + httpx), the comparison of every answer with the serial
one, latency statistics, the app's server process and samples of its resources (RSS, threads, open files)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
Answer = list[tuple[int, float]]  # (item_id, score) per rank, best first
SCORE_TOL = 1e-5


# ------------------------------------------------------------------------------------ answers and statistics
@dataclass(frozen=True)
class Sample:
    """One request: which client sent which query, when it started (s since the run's start), how long it took (s),
    and its answer or error."""

    client: int
    query: int
    start: float
    latency: float
    answer: Answer | None
    error: str | None = None

    @property
    def end(self) -> float:
        return self.start + self.latency


def answer_of(hits: Sequence[Any]) -> Answer:
    """``[(item_id, score)]`` from :class:`serving.retriever.Hit` objects or the app's hit dicts."""
    return [(int(h["item_id"]), float(h["score"])) if isinstance(h, dict) else (int(h.item_id), float(h.score))
            for h in hits]


def compare(got: Answer | None, ref: Answer, tol: float = SCORE_TOL) -> str | None:
    """``None`` when ``got`` has the item ids of ``ref`` in the same order and every score within ``tol``; else
    the first difference."""
    if got is None:
        return "no answer"
    if len(got) != len(ref):
        return f"{len(got)} hits, serial {len(ref)}"
    for rank, ((gi, gs), (ri, rs)) in enumerate(zip(got, ref, strict=True), 1):
        if gi != ri:
            return f"rank {rank}: item {gi}, serial {ri}"
        if not abs(gs - rs) <= tol:  # also catches NaN
            return f"rank {rank}: score {gs:.7f}, serial {rs:.7f}"
    return None


def latency_stats(latencies: Sequence[float]) -> dict[str, float | None]:
    """p50 / p95 / p99 / mean / max in milliseconds (linear interpolation; None without samples)."""
    if not latencies:
        return {k: None for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")}
    ms = np.asarray(latencies, dtype=np.float64) * 1000
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(ms.mean()),
            "max_ms": float(ms.max())}


def summarize(samples: Sequence[Sample], ref: Sequence[Answer], wall: float, planned: int | None = None,
              ) -> dict[str, Any]:
    """Requests, errors, answers equal to the serial ones, throughput (answered requests per second of wall time)
    and latency statistics of the requests without error; a few examples of errors and differences."""
    ok = [s for s in samples if s.error is None]
    diffs = [(s, why) for s in ok if (why := compare(s.answer, ref[s.query])) is not None]
    errors = [s for s in samples if s.error is not None]
    return {"planned": planned, "requests": len(samples), "errors": len(errors), "mismatches": len(diffs),
            "equal": len(ok) - len(diffs), "wall_s": wall, "throughput": len(ok) / wall if wall > 0 else 0.0,
            **latency_stats([s.latency for s in ok]),
            "error_examples": sorted({s.error or "" for s in errors})[:3],
            "mismatch_examples": [f"query {s.query}: {why}" for s, why in diffs[:3]]}


def query_of(client: int, j: int, clients: int, n_queries: int) -> int:
    """The query of a client's ``j``-th request: clients interleave over the query list, so concurrent requests
    ask different queries."""
    return (client + j * clients) % n_queries


def _more(j: int, per_client: int | None, stop_at: float | None) -> bool:
    return (per_client is None or j < per_client) and (stop_at is None or time.perf_counter() < stop_at)


# ----------------------------------------------------------------------------------------- thread clients
def run_threads(call: Callable[[int], Answer], n_queries: int, clients: int, per_client: int | None = None,
                stop_at: float | None = None, desc: str = "threads", progress: bool = True,
                ) -> tuple[list[Sample], float]:
    """``clients`` threads, each sending ``call(query)`` back to back until it has sent ``per_client`` requests or
    ``time.perf_counter()`` passes ``stop_at`` (at least one of the two must be given). Returns the samples and the
    wall time. A request that raises is recorded as an error, never re-raised."""
    if per_client is None and stop_at is None:
        raise ValueError("give per_client or stop_at: the load must stop by itself")
    samples: list[Sample] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    bar = tqdm(total=per_client * clients if per_client else None, desc=desc, unit="req", disable=not progress)
    t0 = 0.0

    def worker(c: int) -> None:
        start.wait()
        j = 0
        while _more(j, per_client, stop_at):
            q = query_of(c, j, clients, n_queries)
            s = time.perf_counter()
            try:
                ans, err = call(q), None
            except Exception as exc:  # noqa: BLE001 - a failed request is counted as an error, not raised
                ans, err = None, f"{type(exc).__name__}: {exc}"
            e = time.perf_counter()
            with lock:
                samples.append(Sample(c, q, s - t0, e - s, ans, err))
            bar.update(1)
            j += 1

    threads = [threading.Thread(target=worker, args=(c,), name=f"load-client-{c}", daemon=True)
               for c in range(clients)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    bar.close()
    return sorted(samples, key=lambda s: s.start), wall


# ------------------------------------------------------------------------------------------- HTTP clients
class AppError(RuntimeError):
    """The app answered with an error event or a refusal instead of results."""


@dataclass
class AppClient:
    """The app's ``search`` endpoint through Gradio's documented HTTP API ("Querying Gradio Apps with Curl"): the
    query file is uploaded (``POST /gradio_api/upload``, as ``gradio_client`` does for a local file), the call
    submitted (``POST /gradio_api/call/search`` -> ``event_id``) and its result read from the event stream
    (``GET /gradio_api/call/search/{event_id}``: ``event: complete`` / ``error``, ``data: [...]``)."""

    url: str
    k: int = 10
    mode: str = "Overlay"
    alpha: float = 0.55
    protocol: bool = False  # the Market protocol would drop hits; off, the app answers what Retriever.query does
    api_name: str = "search"

    async def search(self, http: httpx.AsyncClient, name: str, data: bytes) -> Answer:
        base = self.url.rstrip("/") + "/gradio_api"
        r = await http.post(f"{base}/upload", files=[("files", (name, data, "image/jpeg"))])
        r.raise_for_status()
        payload = {"data": [{"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}},
                            self.k, self.mode, self.alpha, self.protocol]}
        r = await http.post(f"{base}/call/{self.api_name}", json=payload)
        r.raise_for_status()
        event_id = r.json()["event_id"]
        event, out = None, None
        async with http.stream("GET", f"{base}/call/{self.api_name}/{event_id}") as resp:
            resp.raise_for_status()
            async for line in resp.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    if event == "error":
                        raise AppError(f"error event: {line[5:].strip()[:200]}")
                    out = json.loads(line[5:])
                    break
        if out is None:
            raise AppError(f"the result stream of {event_id} ended without a complete event")
        _view, gallery, status, hits = out
        if not hits or len(gallery) != len(hits):
            raise AppError(f"{len(hits or [])} hits and {len(gallery or [])} tiles; status: {status[:200]}")
        return answer_of(hits)


def run_http(client: AppClient, queries: Sequence[Path], clients: int, per_client: int | None = None,
             stop_at: float | None = None, timeout: float = 600.0, desc: str = "http", progress: bool = True,
             ) -> tuple[list[Sample], float]:
    """``clients`` concurrent asyncio clients (one connection pool), each sending searches back to back, bounded as
    :func:`run_threads`; a request that fails or takes longer than ``timeout`` seconds is an error."""
    if per_client is None and stop_at is None:
        raise ValueError("give per_client or stop_at: the load must stop by itself")
    files = [(p.name, p.read_bytes()) for p in queries]
    samples: list[Sample] = []
    bar = tqdm(total=per_client * clients if per_client else None, desc=desc, unit="req", disable=not progress)

    async def main() -> float:
        limits = httpx.Limits(max_connections=2 * clients + 4, max_keepalive_connections=2 * clients + 4)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as http:
            t0 = time.perf_counter()

            async def worker(c: int) -> None:
                j = 0
                while _more(j, per_client, stop_at):
                    q = query_of(c, j, clients, len(files))
                    s = time.perf_counter()
                    try:
                        ans, err = await asyncio.wait_for(client.search(http, *files[q]), timeout), None
                    except Exception as exc:  # noqa: BLE001 - a failed request is counted as an error, not raised
                        ans, err = None, f"{type(exc).__name__}: {str(exc)[:200]}"
                    samples.append(Sample(c, q, s - t0, time.perf_counter() - s, ans, err))
                    bar.update(1)
                    j += 1

            await asyncio.gather(*(worker(c) for c in range(clients)))
            return time.perf_counter() - t0

    wall = asyncio.run(main())
    bar.close()
    return sorted(samples, key=lambda s: s.start), wall


# ------------------------------------------------------------------------------------------ the app server
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class AppServer:
    """``python app.py`` serving an index on 127.0.0.1, in a child process (so that its RSS is its own)."""

    url: str
    proc: subprocess.Popen
    log: Path
    temp_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode


def start_app(index_dir: Path, work: Path, threads: int = 1, concurrency: int | None = None,
              timeout: float = 1800.0, app_args: Sequence[str] = ()) -> AppServer:
    """Start the app on ``index_dir`` (cwd ``work``, Gradio's files in ``work/gradio-tmp``) on a free port and wait
    until ``/config`` answers. ``concurrency`` sets ``GRADIO_DEFAULT_CONCURRENCY_LIMIT`` (Gradio's default: 1 search
    at a time); ``app_args`` are added to ``python app.py``'s command line. The child inherits this process's
    niceness."""
    work.mkdir(parents=True, exist_ok=True)
    temp = work / "gradio-tmp"
    port = free_port()
    extra = {"GRADIO_TEMP_DIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False",
             "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if concurrency is not None:
        extra["GRADIO_DEFAULT_CONCURRENCY_LIMIT"] = str(concurrency)
    log = work / f"app-{port}.log"
    cmd = [sys.executable, str(ROOT / "app.py"), "--index", str(index_dir), "--host", "127.0.0.1", "--port",
           str(port), "--threads", str(threads), *app_args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env={**os.environ, **extra}, stdout=out, stderr=subprocess.STDOUT)
    server = AppServer(f"http://127.0.0.1:{port}", proc, log, temp, extra)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(server.url + "/config", timeout=10, trust_env=False).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    server.stop()
    raise RuntimeError(f"the app did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


# ------------------------------------------------------------------------------------- resources and soak
def proc_stats(pid: int) -> dict[str, float]:
    """RSS and peak RSS (MB), threads, open file descriptors and CPU time used so far (user + system, s) of process
    ``pid`` (Linux ``/proc``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; utime and stime are fields 14 and 15
    out: dict[str, float] = {"cpu_s": (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out["rss_mb" if key == "VmRSS" else "hwm_mb"] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out["threads"] = int(value)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def dir_usage(path: Path | None) -> dict[str, int]:
    """Files and bytes under ``path`` (zeros if it does not exist)."""
    files = size = 0
    if path is not None and path.is_dir():
        for p in path.rglob("*"):
            if p.is_file():
                files += 1
                size += p.stat().st_size
    return {"files": files, "bytes": size}


class Sampler(threading.Thread):
    """Samples :func:`proc_stats` of ``pid`` every ``interval`` seconds until :meth:`stop`; ``rows`` are
    ``(seconds since t0, stats)``."""

    def __init__(self, pid: int, t0: float, interval: float = 1.0) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.pid, self.t0, self.interval = pid, t0, interval
        self.rows: list[tuple[float, dict[str, float]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            try:
                self.rows.append((time.perf_counter() - self.t0, proc_stats(self.pid)))
            except OSError:  # the process is gone: nothing more to sample
                return
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> list[tuple[float, dict[str, float]]]:
        self._stop_event.set()
        self.join()
        return self.rows


LEAK_MB = 8.0
"""Fitted RSS growth over the soak's second half that counts as a leak."""
LEAK_MB_PER_1000 = 2.0
"""Growth of the RSS floor per 1000 answered requests over the second half that counts as a leak (a server that
keeps 2 MB per 1000 requests gains 1 GB in 500k requests), when it is also resolved: more than ``SLOPE_Z``
standard errors of the fitted slope."""
SLOPE_Z = 3.0
FLOOR_BLOCKS = 10
"""The second half is cut into this many equal time blocks; each contributes its lowest RSS sample (the floor)."""
MIN_FLOOR_BLOCKS = 6
"""Blocks that must hold a sample for any verdict: a soak too short for that (seconds at 1 sample/s) says nothing."""


def rss_trend(t: np.ndarray, rss: np.ndarray, done: np.ndarray, seconds: float, leak_mb: float = LEAK_MB,
              leak_mb_per_1000: float = LEAK_MB_PER_1000) -> dict[str, Any]:
    """Whether the memory a soak keeps still grows after its warm-up, from samples ``t`` (s since the start),
    ``rss`` (MB) and ``done`` (requests answered by each sample).

    A request allocates tens of MB for a moment (decoded images, tiles), so single samples jump; what a leak
    raises is the floor. The second half (``t >= seconds / 2``) is cut into ``FLOOR_BLOCKS`` time blocks, and
    lines are fitted (least squares) to each block's lowest RSS: against time (``rss_slope_mb_per_min``;
    ``rss_second_half_growth_mb`` = that slope times the half's length) and against the requests answered by the
    end of the block (``rss_mb_per_1000_requests``, standard error ``..._se``; block floors are far less
    correlated than 1-s samples). ``leak`` when the fitted growth over the half exceeds ``leak_mb``, or when the
    growth per 1000 requests exceeds ``leak_mb_per_1000`` and ``SLOPE_Z`` standard errors. A plateau (growth in
    the first half, then flat) is not a leak; a steady growth is one however slow, once the soak resolves it.
    Fewer than ``MIN_FLOOR_BLOCKS`` blocks with a sample (a soak of seconds): no slopes and no leak."""
    half = t >= seconds / 2
    edges = np.linspace(seconds / 2, max(seconds, float(t.max(initial=0.0))) + 1e-9, FLOOR_BLOCKS + 1)
    block = np.clip(np.searchsorted(edges, t[half], side="right") - 1, 0, FLOOR_BLOCKS - 1)
    tb, fb, db = [], [], []
    for b in np.unique(block):
        sel = block == b
        i = int(np.argmin(rss[half][sel]))
        tb.append(t[half][sel][i])
        fb.append(rss[half][sel][i])
        db.append(done[half][sel].max())
    tb_, fb_, db_ = (np.asarray(v, dtype=np.float64) for v in (tb, fb, db))
    fit = len(tb_) >= MIN_FLOOR_BLOCKS
    slope = float(np.polyfit(tb_, fb_, 1)[0]) * 60 if fit else 0.0  # MB per minute
    n_half = int(np.ptp(done[half])) if int(half.sum()) else 0
    per_k = se_k = 0.0
    if fit and np.ptp(db_) > 0:
        coef, cov = np.polyfit(db_, fb_, 1, cov=True)
        per_k, se_k = float(coef[0]) * 1000, float(np.sqrt(max(cov[0, 0], 0.0))) * 1000
    growth = slope * (seconds / 2) / 60
    by_requests = per_k > leak_mb_per_1000 and per_k > SLOPE_Z * se_k
    return {"rss_slope_mb_per_min": slope, "rss_mb_per_1000_requests": per_k, "rss_mb_per_1000_requests_se": se_k,
            "second_half_requests": n_half, "rss_second_half_growth_mb": growth,
            "leak": bool(growth > leak_mb or by_requests), "leak_mb": leak_mb, "leak_mb_per_1000": leak_mb_per_1000}


def soak(run: Callable[[float], tuple[list[Sample], float]], pid: int, seconds: float, ref: Sequence[Answer],
         windows: int = 10, interval: float = 1.0, temp_dir: Path | None = None, leak_mb: float = LEAK_MB,
         leak_mb_per_1000: float = LEAK_MB_PER_1000) -> dict[str, Any]:
    """Constant load for ``seconds``: ``run(stop_at)`` drives the clients until ``time.perf_counter()`` reaches
    ``stop_at`` while the resources of process ``pid`` are sampled. Per window: requests, errors, answers equal to
    the serial ones, p50/p95 latency (requests by completion time), RSS, threads and open files at its end.

    RSS growth is measured from the end of the first window (after the warm-up: caches filled, pools grown) to the
    end; whether it still grows after the warm-up is :func:`rss_trend`'s verdict over the second half."""
    before = proc_stats(pid)
    usage_before = dir_usage(temp_dir)
    t0 = time.perf_counter()
    sampler = Sampler(pid, t0, interval)
    sampler.start()
    samples, wall = run(t0 + seconds)
    rows = sampler.stop()
    after = proc_stats(pid)
    width = seconds / windows
    table = []
    for w in range(windows):
        lo, hi = w * width, (w + 1) * width if w < windows - 1 else math.inf
        ws = [s for s in samples if lo <= s.end < hi]
        at_end = [st for t, st in rows if t <= (w + 1) * width] or [before]
        summ = summarize(ws, ref, width)
        table.append({"window": w + 1, "t_end_s": (w + 1) * width if w < windows - 1 else wall,
                      "requests": summ["requests"],
                      "errors": summ["errors"], "mismatches": summ["mismatches"], "p50_ms": summ["p50_ms"],
                      "p95_ms": summ["p95_ms"], "rss_mb": at_end[-1]["rss_mb"], "threads": at_end[-1]["threads"],
                      "fds": at_end[-1]["fds"]})
    t = np.array([r[0] for r in rows], dtype=np.float64)
    rss = np.array([r[1]["rss_mb"] for r in rows], dtype=np.float64)
    done = np.searchsorted(np.sort([s.end for s in samples]), t, side="right")  # requests answered by each sample
    first_end = table[0]["rss_mb"]
    p50s = [w["p50_ms"] for w in table if w["p50_ms"] is not None]
    total = summarize(samples, ref, wall)
    return {
        "seconds": seconds, "wall_s": wall, "windows": table, **{k: total[k] for k in (
            "requests", "errors", "mismatches", "equal", "throughput", "p50_ms", "p95_ms", "p99_ms", "max_ms",
            "error_examples", "mismatch_examples")},
        "rss_before_mb": before["rss_mb"], "rss_first_window_mb": first_end, "rss_end_mb": after["rss_mb"],
        "rss_max_mb": max([after["rss_mb"], *rss.tolist()]), "rss_growth_mb": after["rss_mb"] - first_end,
        **rss_trend(t, rss, done, seconds, leak_mb, leak_mb_per_1000),
        "series": {"t_s": np.round(t, 2).tolist(), "rss_mb": np.round(rss, 2).tolist(), "done": done.tolist()},
        "threads_before": before["threads"], "threads_end": after["threads"],
        "fds_before": before["fds"], "fds_end": after["fds"],
        "p50_first_ms": p50s[0] if p50s else None, "p50_last_ms": p50s[-1] if p50s else None,
        "p50_drift": (p50s[-1] / p50s[0]) if len(p50s) >= 2 and p50s[0] else None,
        "temp_before": usage_before, "temp_end": dir_usage(temp_dir), "samples": len(rows),
        "cpu_ms_per_request": 1000 * (after["cpu_s"] - before["cpu_s"]) / max(1, total["requests"]),
    }

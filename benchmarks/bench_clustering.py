"""Benchmark: sparse Jaccard distance + DBSCAN vs the dense Cluster Contrast reference.

Run: ``python -m benchmarks.bench_clustering --sizes 2000 12936 32621 --dim 2048``

Every measurement runs in a fresh subprocess; its peak RSS is read from ``os.wait4`` (the child's own
``ru_maxrss``). Features: ``N // 17`` identity centres drawn uniformly on the unit sphere in ``dim``
dimensions, shifted towards one of 6 shared "camera" directions (so identities are not orthogonal),
each image assigned to a random identity (Poisson-like sizes, mean 17) and perturbed by isotropic
Gaussian noise whose scale varies per identity; 5% of the images are pure noise (true outliers).
All rows are L2-normalised. The dense reference is a literal copy of ``compute_jaccard_distance``
(alibaba/cluster-contrast-reid, clustercontrast/utils/faiss_rerank.py, CPU faiss search) and is only
run when its estimated memory (3 float32 N x N matrices + 1.5 GB) fits under ``--dense-max-gb``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from tests.reference.reference_jaccard import reference_jaccard_distance


def make_features(n: int, dim: int, seed: int = 0, per_id: int = 17) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit-norm features ``(n, dim)`` float32 and their true identity (-1 for noise)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // per_id)
    cams = rng.standard_normal((6, dim)).astype(np.float32)
    cams /= np.linalg.norm(cams, axis=1, keepdims=True)
    centres = rng.standard_normal((n_ids, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres += 0.5 * cams[rng.integers(0, 6, n_ids)]
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    ids = rng.integers(0, n_ids, n)
    sigma = rng.uniform(0.6, 1.1, n_ids).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    step = 4096
    for s in range(0, n, step):
        e = min(n, s + step)
        noise = rng.standard_normal((e - s, dim), dtype=np.float32) / np.sqrt(dim)
        x[s:e] = centres[ids[s:e]] + sigma[ids[s:e], None] * noise
    noise_rows = rng.random(n) < 0.05
    x[noise_rows] = rng.standard_normal((int(noise_rows.sum()), dim), dtype=np.float32)
    ids[noise_rows] = -1
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, ids


def _worker(args: argparse.Namespace) -> None:
    import torch
    from sklearn.cluster import DBSCAN

    from scwm.clustering import jaccard_distance, pseudo_labels, relabel_by_first_member

    torch.set_num_threads(args.threads)
    x, _ = make_features(args.n, args.dim, args.seed)
    res: dict[str, float | int | str] = {"mode": args.worker, "n": args.n}
    if args.worker == "sparse":
        t0 = time.perf_counter()
        dist = jaccard_distance(x, k1=args.k1, k2=args.k2)
        t1 = time.perf_counter()
        labels = pseudo_labels(dist, eps=args.eps, min_samples=4)
        t2 = time.perf_counter()
        res.update(jaccard_s=t1 - t0, dbscan_s=t2 - t1, nnz=int(dist.nnz),
                   nnz_per_row=dist.nnz / args.n, matrix_mb=(dist.data.nbytes + dist.indices.nbytes
                                                             + dist.indptr.nbytes) / 2**20)
    elif args.worker == "dense":
        t0 = time.perf_counter()
        dist = reference_jaccard_distance(x, k1=args.k1, k2=args.k2, neighbours="faiss")
        t1 = time.perf_counter()
        labels = relabel_by_first_member(
            DBSCAN(eps=args.eps, min_samples=4, metric="precomputed", n_jobs=1).fit_predict(dist)
        )
        t2 = time.perf_counter()
        res.update(jaccard_s=t1 - t0, dbscan_s=t2 - t1)
    else:  # baseline: interpreter + imports + features only
        labels = np.full(args.n, -1, dtype=np.int64)
    res["clusters"] = int(labels.max() + 1)
    res["outliers"] = int((labels == -1).sum())
    if args.labels_out:
        np.save(args.labels_out, labels)
    print(json.dumps(res))


def _run_child(argv: list[str], timeout: float) -> tuple[dict, float]:
    """Run a worker in a fresh process; return its JSON result (plus ``cpu_s``, user + system CPU
    seconds of the whole process) and its own peak RSS in MiB."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_clustering", *argv], stdout=out)
        t0 = time.time()
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.time() - t0 > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                raise TimeoutError(f"worker {argv} exceeded {timeout}s")
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {argv} failed with exit code {proc.returncode}")
    res = json.loads(text.strip().splitlines()[-1])
    res["cpu_s"] = usage.ru_utime + usage.ru_stime
    return res, usage.ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 12936, 32621])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--k1", type=int, default=30)
    ap.add_argument("--k2", type=int, default=6)
    ap.add_argument("--eps", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dense-max-gb", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--worker", choices=["sparse", "dense", "baseline"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--labels-out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}")
    common = ["--dim", str(args.dim), "--k1", str(args.k1), "--k2", str(args.k2), "--eps", str(args.eps),
              "--seed", str(args.seed), "--threads", str(args.threads)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            base = ["--n", str(n), *common]
            _, base_rss = _run_child(["--worker", "baseline", *base], args.timeout)
            sp_res, sp_rss = _run_child(
                ["--worker", "sparse", *base, "--labels-out", f"{tmp}/s{n}.npy"], args.timeout
            )
            row = {"n": n, "baseline_rss_mb": base_rss, "sparse": sp_res, "sparse_rss_mb": sp_rss}
            est_gb = 3 * 4 * n * n / 2**30 + 1.5
            row["dense_est_gb"] = est_gb
            if est_gb <= args.dense_max_gb:
                de_res, de_rss = _run_child(
                    ["--worker", "dense", *base, "--labels-out", f"{tmp}/d{n}.npy"], args.timeout
                )
                row.update(dense=de_res, dense_rss_mb=de_rss)
                row["same_partition"] = bool(
                    np.array_equal(np.load(f"{tmp}/s{n}.npy"), np.load(f"{tmp}/d{n}.npy"))
                )
            rows.append(row)
            print(json.dumps(row), flush=True)

    print("\n| N | sparse wall (jaccard + dbscan) | sparse CPU | sparse peak RSS | dense wall | dense CPU | "
          "dense peak RSS | RSS ratio | wall ratio | same partition | clusters / outliers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["sparse"]
        st = s["jaccard_s"] + s["dbscan_s"]
        if "dense" in r:
            d = r["dense"]
            dt = d["jaccard_s"] + d["dbscan_s"]
            ratio = r["dense_rss_mb"] / r["sparse_rss_mb"]
            dense_cols = (
                f"{dt:.1f} s ({d['jaccard_s']:.1f} + {d['dbscan_s']:.1f}) | {d['cpu_s']:.0f} s | "
                f"{r['dense_rss_mb']:.0f} MiB | "
                f"{ratio:.1f}x | {dt / st:.1f}x | {r['same_partition']}"
            )
        else:
            dense_cols = f"not run (est. > {r['dense_est_gb']:.1f} GB) | | | | | "
        print(f"| {r['n']} | {st:.1f} s ({s['jaccard_s']:.1f} + {s['dbscan_s']:.1f}) | {s['cpu_s']:.0f} s | "
              f"{r['sparse_rss_mb']:.0f} MiB (baseline {r['baseline_rss_mb']:.0f}) | {dense_cols} | "
              f"{s['clusters']} / {s['outliers']} |")


if __name__ == "__main__":
    main()

"""Benchmark of re-ID evaluation: time and peak extra memory of chunked vs dense evaluation.

    python -m benchmarks.bench_evaluation --num-query 11659 --num-gallery 82161 --dim 2048

Clustered random features (``--num-ids`` identities, ``--num-cams`` cameras, L2-normalized) are made in
a fresh subprocess per measurement; the peak extra memory is the rise of the process's peak RSS over its
RSS after the features exist (Linux ``/proc/self/clear_refs`` + ``VmHWM``; ``ru_maxrss`` fallback).
Measured at the main (MSMT17) scale: chunked :func:`evaluate_features`. Side by side at the small
(Market-1501) scale: chunked, dense (full distance matrix then :func:`evaluate_rank`) and torchreid's
Python ``eval_market1501`` loop on the same dense matrix (``--no-reference`` to skip it).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch

from scwm.evaluation import evaluate_features, evaluate_rank, pairwise_distance


def make_features(
    num_q: int, num_g: int, dim: int, num_ids: int, num_cams: int, noise: float, cam_bias: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clustered L2-normalized float32 features; identity centres plus a camera offset plus noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((num_ids, dim), dtype=np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    cam_vecs = rng.standard_normal((num_cams, dim), dtype=np.float32)
    cam_vecs *= cam_bias / np.linalg.norm(cam_vecs, axis=1, keepdims=True)

    def block(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pids = rng.integers(0, num_ids, n)
        cams = rng.integers(0, num_cams, n)
        out = np.empty((n, dim), dtype=np.float32)
        for s in range(0, n, 4096):  # small temporaries, so the baseline RSS is the features
            e = min(n, s + 4096)
            x = rng.standard_normal((e - s, dim), dtype=np.float32)
            x *= noise
            x += centers[pids[s:e]]
            x += cam_vecs[cams[s:e]]
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out[s:e] = x
        return out, pids, cams

    q, qp, qc = block(num_q)
    g, gp, gc = block(num_g)
    return q, g, qp, gp, qc, gc


def ref_eval_market1501(distmat, q_pids, g_pids, q_camids, g_camids, max_rank):  # noqa: ANN001
    """torchreid ``torchreid/metrics/rank.py`` ``eval_market1501`` Python path (+ fast-reid mINP)."""
    num_q, num_g = distmat.shape
    max_rank = min(max_rank, num_g)
    indices = np.argsort(distmat, axis=1)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap, all_inp = [], [], []
    for q_idx in range(num_q):
        order = indices[q_idx]
        remove = (g_pids[order] == q_pids[q_idx]) & (g_camids[order] == q_camids[q_idx])
        raw_cmc = matches[q_idx][np.invert(remove)]
        if not np.any(raw_cmc):
            continue
        cmc = raw_cmc.cumsum()
        max_pos_idx = np.max(np.where(raw_cmc == 1))
        all_inp.append(cmc[max_pos_idx] / (max_pos_idx + 1.0))
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        tmp_cmc = np.asarray([x / (i + 1.0) for i, x in enumerate(raw_cmc.cumsum())]) * raw_cmc
        all_ap.append(tmp_cmc.sum() / raw_cmc.sum())
    all_cmc = np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_ap)
    return all_cmc, float(np.mean(all_ap)), float(np.mean(all_inp))


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def run_one(cfg: dict[str, Any]) -> dict[str, Any]:
    """One measurement (runs inside a fresh subprocess)."""
    torch.set_num_threads(cfg["threads"])
    q, g, qp, gp, qc, gc = make_features(
        cfg["num_query"],
        cfg["num_gallery"],
        cfg["dim"],
        cfg["num_ids"],
        cfg["num_cams"],
        cfg["noise"],
        cfg["cam_bias"],
        cfg["seed"],
    )
    exact_peak = _reset_peak()
    base_kib = _status_kib("VmRSS") or 0
    base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    mode = cfg["mode"]
    if mode == "chunked":
        res = evaluate_features(
            q, g, qp, gp, qc, gc, metric="cosine", memory_budget_bytes=cfg["memory_budget"]
        ).as_dict()
    elif mode == "dense":
        dist = pairwise_distance(q, g, "cosine")
        res = evaluate_rank(dist, qp, gp, qc, gc, memory_budget_bytes=cfg["memory_budget"]).as_dict()
    elif mode == "torchreid":
        dist = pairwise_distance(q, g, "cosine").numpy()
        cmc, m_ap, m_inp = ref_eval_market1501(dist, qp, gp, qc, gc, 50)
        res = {"mAP": m_ap, "mINP": m_inp, "rank1": float(cmc[0])}
    else:
        raise ValueError(f"unknown mode {mode!r}")
    seconds = time.perf_counter() - t0
    if exact_peak and _status_kib("VmHWM") is not None:
        extra_kib = _status_kib("VmHWM") - base_kib
    else:
        extra_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_maxrss
    return {
        "mode": mode,
        "num_query": cfg["num_query"],
        "num_gallery": cfg["num_gallery"],
        "seconds": round(seconds, 2),
        "peak_extra_mib": round(extra_kib / 1024, 1),
        "features_mib": round(base_kib / 1024, 1),
        "peak_method": "VmHWM" if exact_peak else "ru_maxrss",
        "mAP": round(res["mAP"], 6),
        "mINP": round(res["mINP"], 6),
        "rank1": round(res["rank1"], 6),
    }


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`run_one` in a fresh interpreter so peak memory is not inherited."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_evaluation", "--_child", json.dumps(cfg)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-query", type=int, default=11659)
    p.add_argument("--num-gallery", type=int, default=82161)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--small-query", type=int, default=3368, help="side-by-side scale (0 to skip)")
    p.add_argument("--small-gallery", type=int, default=15913)
    p.add_argument("--num-ids", type=int, default=3060)
    p.add_argument("--num-cams", type=int, default=15)
    p.add_argument("--noise", type=float, default=0.06, help="per-dimension noise std before normalizing")
    p.add_argument("--cam-bias", type=float, default=0.5)
    p.add_argument("--memory-budget", type=int, default=1 << 30, help="bytes of ranking temporaries")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-reference", action="store_true", help="skip torchreid's Python loop")
    p.add_argument("--json", default=None, help="also write all results to this file")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child is not None:
        print(json.dumps(run_one(json.loads(args._child))))
        return

    base = {
        k: getattr(args, k)
        for k in ("dim", "num_ids", "num_cams", "noise", "cam_bias", "seed", "memory_budget", "threads")
    }
    print(f"# {platform.platform()}, torch {torch.__version__}, {args.threads} threads", flush=True)
    results = []
    if args.small_query > 0:
        small = {**base, "num_query": args.small_query, "num_gallery": args.small_gallery}
        modes = ["chunked", "dense"] + ([] if args.no_reference else ["torchreid"])
        results += [measure({**small, "mode": m}) for m in modes]
    big = {**base, "num_query": args.num_query, "num_gallery": args.num_gallery}
    results.append(measure({**big, "mode": "chunked"}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()

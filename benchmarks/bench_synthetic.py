"""Benchmark of the synthetic world: generation speed, dataset statistics and colour-histogram baselines.

Run: ``python -m benchmarks.bench_synthetic [--presets market msmt] [--workers 2] [--json PATH]``.

For each preset it generates the dataset into a temporary directory (single process, and with
``--workers`` processes), then reports images/s, split counts, the near-twin fraction, part-area
statistics, incomplete/occluded rates, and three retrieval baselines on query/gallery (Market-1501
protocol: gallery entries with the query's pid *and* camera are removed per query):

- ``global``: one 8x8x8 RGB histogram of the whole crop (what global colour statistics can do);
- ``stripes``: three horizontal stripes, one histogram each (a fixed part partition);
- ``gt-foreground``: one histogram of the ground-truth person pixels (global colour statistics of the
  person alone, without background: what the confusers are designed to defeat);
- ``gt-parts``: one histogram per ground-truth part mask (an oracle for aligned parts).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from scwm.data.synthetic import PART_NAMES, generate, preset


def _hist(pixels: np.ndarray, bins: int = 8) -> np.ndarray:
    """Hellinger-normalised joint RGB histogram of an (N, 3) uint8 array (zeros if N == 0)."""
    h = np.zeros(bins**3, np.float64)
    if len(pixels):
        q = (pixels.astype(np.int64) * bins) // 256
        np.add.at(h, (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], 1.0)
        h /= h.sum()
    return np.sqrt(h)


def features(root: Path, records: list[dict]) -> dict[str, np.ndarray]:
    """Global, stripe and ground-truth-part colour histograms for ``records``."""
    out: dict[str, list[np.ndarray]] = {"global": [], "stripes": [], "gt-foreground": [], "gt-parts": []}
    for r in records:
        img = np.asarray(Image.open(root / r["file"]).convert("RGB"))
        mask = np.asarray(Image.open(root / r["mask"]))
        h = img.shape[0]
        out["global"].append(_hist(img.reshape(-1, 3)))
        out["stripes"].append(np.concatenate([_hist(img[k * h // 3:(k + 1) * h // 3].reshape(-1, 3))
                                              for k in range(3)]) / np.sqrt(3))
        out["gt-foreground"].append(_hist(img[mask > 0]))
        out["gt-parts"].append(np.concatenate([_hist(img[mask == p]) for p in range(1, len(PART_NAMES))]) / 2.0)
    return {k: np.stack(v) for k, v in out.items()}


def rank_metrics(dist: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray,
                 g_cams: np.ndarray) -> tuple[float, float]:
    """(mAP, rank-1) with same-pid-same-camera gallery entries removed per query (Market-1501 protocol)."""
    aps, r1 = [], []
    for i in range(len(q_pids)):
        keep = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        order = np.argsort(dist[i][keep], kind="stable")
        match = (g_pids[keep] == q_pids[i])[order]
        if not match.any():
            continue
        hits = np.cumsum(match)
        aps.append(float(np.sum(hits[match] / (np.nonzero(match)[0] + 1)) / match.sum()))
        r1.append(float(match[0]))
    return float(np.mean(aps)), float(np.mean(r1))


def baselines(root: Path) -> dict[str, dict[str, float]]:
    recs = [json.loads(line) for line in (root / "annotations.jsonl").read_text().splitlines()]
    q = [r for r in recs if r["split"] == "query"]
    g = [r for r in recs if r["split"] == "gallery"]
    if not q or not g:
        return {}
    fq, fg = features(root, q), features(root, g)
    arr = {k: np.asarray([r[k] for r in q]) for k in ("pid", "cam")}
    garr = {k: np.asarray([r[k] for r in g]) for k in ("pid", "cam")}
    res = {}
    for name in fq:
        d = ((fq[name] ** 2).sum(1)[:, None] + (fg[name] ** 2).sum(1)[None] - 2 * fq[name] @ fg[name].T)
        m, r1 = rank_metrics(d, arr["pid"], garr["pid"], arr["cam"], garr["cam"])
        res[name] = {"mAP": round(m, 4), "R1": round(r1, 4)}
        try:  # cross-check with the project's evaluator when it is available
            from scwm.evaluation import evaluate_rank

            rr = evaluate_rank(d, arr["pid"], garr["pid"], arr["cam"] - 1, garr["cam"] - 1)
            res[name]["mAP_scwm_evaluation"] = round(float(rr.mAP), 4)
        except ImportError:
            pass
    return res


def run(presets: list[str], seed: int, workers: int, root: Path) -> dict:
    results = {}
    for name in presets:
        out = root / f"{name}_s{seed}"
        t0 = time.perf_counter()
        generate(name, out, seed=seed, progress=False, overwrite=True)
        t1 = time.perf_counter() - t0
        meta = json.loads((out / "meta.json").read_text())
        n = sum(meta["counts"].values())
        entry = {"images": n, "seconds_1proc": round(t1, 2), "img_per_s_1proc": round(n / t1, 1)}
        if workers > 1:
            out_w = root / f"{name}_s{seed}_w{workers}"
            t0 = time.perf_counter()
            generate(name, out_w, seed=seed, progress=False, overwrite=True, num_workers=workers)
            tw = time.perf_counter() - t0
            entry.update({f"seconds_{workers}workers": round(tw, 2), f"img_per_s_{workers}workers": round(n / tw, 1)})
            same = all((out / p.relative_to(out_w)).read_bytes() == p.read_bytes()
                       for p in out_w.rglob("*.jpg"))
            entry["workers_byte_identical"] = same
        ids = json.loads((out / "identities.json").read_text())
        rows = [r for split in ids.values() for r in split]
        entry.update(counts=meta["counts"], num_distractors=meta["num_distractors"], num_ids=meta["num_ids"],
                     twin_fraction=round(sum(r["twin_of"] is not None or "twin" in r for r in rows) / len(rows), 4),
                     stats=meta["stats"], baselines=baselines(out))
        results[name] = entry
        print(json.dumps({name: entry}, indent=1), flush=True)
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["tiny", "market", "msmt", "source"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out-root", default=None, help="where to generate (default: a temporary directory)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    for p in args.presets:
        preset(p)  # fail early on a bad name
    if args.out_root:
        results = run(args.presets, args.seed, args.workers, Path(args.out_root))
    else:
        with tempfile.TemporaryDirectory(prefix="bench_synthetic_") as tmp:
            results = run(args.presets, args.seed, args.workers, Path(tmp))
    results["_machine"] = {"cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Benchmark of spatial cascaded clustering (Sec. 3.2): speed at the paper's scale, agreement with a
per-image scikit-learn loop, and parsing quality of the variants and design choices on synthetic maps.

Run: ``python -m benchmarks.bench_parsing`` (all parts) or with ``--part speed|sklearn|quality`` and
``--n-maps``, ``--threads``. Results are printed as markdown tables (recorded in docs/bench/parsing.md).

Synthetic maps: ground-truth part layouts at 128x64 (labels 0 background, 1 head, 2 upper body,
3 lower body, 4 shoes, 5 accessory) with per-image vertical shift/scale, area-pooled to the feature grid;
each part has a prototype (shared direction + identity-specific perturbation; shoes share most of the head
direction, the spatial-confusion case), foreground norms vary per cell, a random salient blob on the upper
body has 4x the norm (the foreground-omission case), background has a small norm, plus Gaussian noise.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from scwm.parsing import ParsingConfusion, horizontal_stripes, spatial_cascaded_clustering

NUM_GT = 6
GT_H, GT_W = 128, 64


# --------------------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------------------
def gt_layouts(b: int, g: torch.Generator) -> torch.Tensor:
    """Ground-truth-like label maps ``(B, 128, 64)`` with vertically shifted and scaled persons."""
    ys = torch.arange(GT_H, dtype=torch.float32).view(1, GT_H, 1)
    xs = torch.arange(GT_W, dtype=torch.float32).view(1, 1, GT_W)
    top = 4 + 14 * torch.rand(b, 1, 1, generator=g)
    height = 100 + 20 * torch.rand(b, 1, 1, generator=g)
    height = torch.minimum(height, GT_H - 1 - top)
    cx = 32 + 6 * (torch.rand(b, 1, 1, generator=g) - 0.5)
    half_w = 12 + 5 * torch.rand(b, 1, 1, generator=g)
    rel = (ys - top) / height  # 0 at top of the person, 1 at the feet
    inside = (rel >= 0) & (rel <= 1) & ((xs - cx).abs() <= half_w)
    lab = torch.zeros(b, GT_H, GT_W, dtype=torch.long)
    head = (((xs - cx) / (0.45 * half_w)) ** 2 + ((rel - 0.08) / 0.08) ** 2) <= 1
    lab[head & (rel >= 0)] = 1
    lab[inside & (rel > 0.16) & (rel <= 0.52)] = 2
    lab[inside & (rel > 0.52) & (rel <= 0.9)] = 3
    lab[inside & (rel > 0.9)] = 4
    bag = torch.rand(b, 1, 1, generator=g) < 0.5
    bag_x = cx + half_w * 0.7
    acc = bag & ((xs - bag_x).abs() <= 6) & (rel > 0.3) & (rel <= 0.55)
    lab[acc] = 5
    return lab


def synthetic_maps(
    b: int, c: int, h: int, w: int, seed: int, noise: float = 0.35, salient: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature maps ``(B, C, h, w)`` and GT labels ``(B, 128, 64)``; see module docstring."""
    g = torch.Generator().manual_seed(seed)
    gt = gt_layouts(b, g)
    frac = F.adaptive_avg_pool2d(F.one_hot(gt, NUM_GT).permute(0, 3, 1, 2).float(), (h, w))  # (B,6,h,w)
    gp = torch.Generator().manual_seed(12345)  # shared part directions, same for every batch
    shared = F.normalize(torch.randn(NUM_GT, c, generator=gp), dim=1)
    shared[4] = F.normalize(shared[1] + 0.5 * shared[4], dim=0)  # shoes look like the head (hair/shoes)
    ident = F.normalize(torch.randn(b, NUM_GT, c, generator=g), dim=2)
    protos = F.normalize(shared.unsqueeze(0) + 0.7 * ident, dim=2)  # (B,6,C)
    norm = torch.tensor([0.12, 1.0, 1.0, 1.0, 1.0, 1.0]).view(1, NUM_GT, 1, 1)
    cell_scale = 0.55 + 0.45 * torch.rand(b, 1, h, w, generator=g)
    fg_frac = 1 - frac[:, :1]
    scale = norm * torch.where(fg_frac > 0, cell_scale, torch.ones_like(cell_scale))
    # salient blob: 2x2 cells inside the upper body get 4x the norm
    up = frac[:, 2] > 0.5
    blob = torch.zeros(b, h, w, dtype=torch.bool)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    idx = (up.flatten(1).float() + 1e-3 * torch.rand(b, h * w, generator=g)).argmax(1)
    r0 = (idx // w).view(b, 1, 1) + (torch.randint(0, 3, (b, 1, 1), generator=g))
    c0 = (idx % w).view(b, 1, 1) + torch.randint(0, 2, (b, 1, 1), generator=g)
    blob = ((rows - r0).abs() <= 1) & ((cols - c0).abs() <= 1) & up
    weights = frac * scale * torch.where(blob, salient, 1.0).unsqueeze(1)
    fmap = torch.einsum("blhw,blc->bchw", weights, protos)
    fmap = fmap + (noise / math.sqrt(c)) * torch.randn(b, c, h, w, generator=g) * (
        0.3 + fg_frac
    )
    return fmap.relu_(), gt  # post-ReLU like a ResNet feature map


# --------------------------------------------------------------------------------------------------
# (a) speed
# --------------------------------------------------------------------------------------------------
def bench_speed(n_maps: int, batch: int, c: int, h: int, w: int, pool: int = 4, **kw) -> dict:
    """Time SCC over ``n_maps`` maps, ``batch`` at a time. Generating 2048-channel maps costs more than
    clustering them, so ``pool`` distinct batches are generated once and cycled (the clustering cost of a
    batch does not depend on whether it was seen before; nothing is cached)."""
    total, done, fg_points = 0.0, 0, 0
    t_gen = time.perf_counter()
    batches = [synthetic_maps(batch, c, h, w, seed=10_000 + i)[0] for i in range(pool)]
    gen_time = time.perf_counter() - t_gen
    step = 0
    while done < n_maps:
        b = min(batch, n_maps - done)
        fmap = batches[step % pool][:b]
        step += 1
        t0 = time.perf_counter()
        lab = spatial_cascaded_clustering(fmap, 4, **kw)
        total += time.perf_counter() - t0
        fg_points += int((lab != 3).sum())
        done += b
    return {"maps": done, "scc_s": total, "gen_s": gen_time, "wall_s": time.perf_counter() - t_gen,
            "fg_per_map": fg_points / max(done, 1)}


# --------------------------------------------------------------------------------------------------
# (a') per-image scikit-learn reference
# --------------------------------------------------------------------------------------------------
def sklearn_one(fmap: np.ndarray, num_parts: int, eta: float, fc: bool, sc: bool) -> np.ndarray:
    """Straightforward per-image reference: numpy + sklearn KMeans / AgglomerativeClustering."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    c, h, w = fmap.shape
    v = fmap.reshape(c, -1).T.astype(np.float64)
    norms = np.linalg.norm(v, axis=1)
    s = 1 / (1 + np.exp(-(10 * norms / norms.max() - 2)))
    km = KMeans(3 if fc else 2, n_init=10, random_state=0).fit(s[:, None])
    fg = km.labels_ != np.argmin(km.cluster_centers_[:, 0])
    out = np.full(h * w, num_parts - 1)
    pts = np.flatnonzero(fg)
    k = num_parts - 1
    x = v[pts] / np.maximum(np.linalg.norm(v[pts], axis=1, keepdims=True), 1e-12)
    if len(pts) <= k:
        lab = np.arange(len(pts))
    elif sc:
        rr, cc = pts // w, pts % w
        ds = np.hypot(rr[:, None] - rr[None], cc[:, None] - cc[None])
        d = np.clip(1 - x @ x.T, 0, None)
        d[ds >= eta] = 3.0 * ((h * w) ** 2 + 1)
        np.fill_diagonal(d, 0)
        lab = AgglomerativeClustering(k, metric="precomputed", linkage="average").fit_predict(d)
    else:
        lab = KMeans(k, n_init=10, random_state=0).fit_predict(x)
    rows = pts // w
    means = [rows[lab == j].mean() if (lab == j).any() else np.inf for j in range(k)]
    rank = np.empty(k, dtype=int)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    out[pts] = rank[lab]
    return out.reshape(h, w)


def bench_sklearn(n: int, c: int, h: int, w: int, eta: float) -> list[dict]:
    fmap, _ = synthetic_maps(n, c, h, w, seed=777)
    rows = []
    for fc, sc, name in ((True, True, "SCC (fg+space)"), (False, False, "original (ISP)")):
        t0 = time.perf_counter()
        ours = spatial_cascaded_clustering(fmap, 4, eta, fc, sc)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        ref = np.stack([sklearn_one(fmap[i].numpy(), 4, eta, fc, sc) for i in range(n)])
        t_ref = time.perf_counter() - t0
        same = (ours.numpy() == ref).reshape(n, -1).all(1)
        px = (ours.numpy() == ref).mean()
        rows.append({"variant": name, "maps": n, "identical_maps": float(same.mean()), "identical_px": float(px),
                     "ours_s": t_ours, "sklearn_s": t_ref, "speedup": t_ref / t_ours})
    return rows


# --------------------------------------------------------------------------------------------------
# (b) quality
# --------------------------------------------------------------------------------------------------
def score(pred: torch.Tensor, gt: torch.Tensor, num_parts: int, background: int | None) -> tuple[float, float]:
    acc = ParsingConfusion(num_parts, NUM_GT, pred_background=background)
    acc.update(pred, gt)
    s = acc.scores()
    return s["fg_iou"], s["part_miou"]


def bench_quality(n: int, c: int, grids: list[tuple[int, int]], num_parts: int = 4) -> list[dict]:
    out = []
    for h, w in grids:
        fmap, gt = synthetic_maps(n, c, h, w, seed=4242)
        grid = f"{h}x{w}"
        stripes = horizontal_stripes(n, h, w, num_parts - 1)
        fi, mi = score(stripes, gt, num_parts - 1, None)
        out.append({"grid": grid, "setting": "PCB stripes (baseline)", "fg_iou": fi, "miou": mi})

        def run(label: str, fmap: torch.Tensor = fmap, gt: torch.Tensor = gt, grid: str = grid, **kw) -> None:
            lab = spatial_cascaded_clustering(fmap, num_parts, **kw)
            fi, mi = score(lab, gt, num_parts, num_parts - 1)
            out.append({"grid": grid, "setting": label, "fg_iou": fi, "miou": mi})

        eta0 = 0.5 * h  # the default in cells scaled with the grid: 12 at 24x8, 8 at 16x8
        run("original (2-class + k-means)", eta=eta0, foreground_correction=False, space_correction=False)
        run("foreground correction only", eta=eta0, foreground_correction=True, space_correction=False)
        run(f"space correction only (eta={eta0:g})", eta=eta0, foreground_correction=False, space_correction=True)
        run(f"both = SCC (eta={eta0:g})", eta=eta0)
        for linkage in ("average", "complete", "single", "ward"):
            for metric in ("cosine", "euclidean"):
                run(f"SCC linkage={linkage} metric={metric} eta={eta0:g}", eta=eta0, linkage=linkage,
                    feature_metric=metric)
        for eta in (2, 3, 4, 6, 8, 10, 12, 14, 16, 20, math.inf):
            if eta > 1.5 * h and not math.isinf(eta):
                continue
            run(f"SCC eta={eta} cells euclidean", eta=eta)
            if not math.isinf(eta) and eta <= h:
                run(f"SCC eta={eta} cells chebyshev", eta=eta, spatial_metric="chebyshev")
        for frac in (0.25, 0.5, 0.75):
            run(f"SCC eta={frac} x height", eta=frac, eta_unit="height")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["all", "speed", "sklearn", "quality"], default="all")
    ap.add_argument("--n-maps", type=int, default=12936)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--channels", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave default)")
    ap.add_argument("--eta", type=float, default=12.0)
    ap.add_argument("--sklearn-maps", type=int, default=200)
    ap.add_argument("--quality-maps", type=int, default=600)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}")
    if args.part in ("all", "speed"):
        for variant, kw in (("SCC (fg+space)", {}), ("original (ISP)", {"foreground_correction": False,
                                                                       "space_correction": False})):
            r = bench_speed(args.n_maps, args.batch, args.channels, 24, 8, eta=args.eta, **kw)
            print(f"| speed {variant} | {r['maps']} maps {args.channels}x24x8 | SCC {r['scc_s']:.1f} s | "
                  f"{1e3 * r['scc_s'] / r['maps']:.2f} ms/map | generation {r['gen_s']:.1f} s (excluded) | "
                  f"fg cells/map {r['fg_per_map']:.1f} |", flush=True)
    if args.part in ("all", "sklearn"):
        for r in bench_sklearn(args.sklearn_maps, args.channels, 24, 8, args.eta):
            print(f"| sklearn {r['variant']} | {r['maps']} maps | identical maps {100 * r['identical_maps']:.1f}% | "
                  f"identical px {100 * r['identical_px']:.2f}% | ours {r['ours_s']:.2f} s | "
                  f"sklearn loop {r['sklearn_s']:.1f} s | x{r['speedup']:.0f} |", flush=True)
    if args.part in ("all", "quality"):
        print("| grid | setting | fg IoU | part mIoU |\n|---|---|---|---|")
        for r in bench_quality(args.quality_maps, 256, [(24, 8), (16, 8)]):
            print(f"| {r['grid']} | {r['setting']} | {r['fg_iou']:.3f} | {r['miou']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

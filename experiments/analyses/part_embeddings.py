"""Retrieval with the part features as well as the global one, for trained models of the harness.

The paper (like PPLR) ranks with the global embedding only; the part branch acts on the backbone only
through training. This benchmark asks whether the part features themselves carry identity information:
for each model, mAP / Rank-1 on the synthetic query/gallery split with (a) the global embedding,
(b) the part embeddings concatenated, (c) global + parts (each part scaled by 1/sqrt(P), re-normalized).

    python -m experiments.analyses.part_embeddings --runs runs/experiments/runs/market \\
        --experiments t1-baseline t1-wm-parsing t1-wm-scc t2-oracle --seeds 0 1
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from experiments.analyses import trained_models, write_outputs
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.evaluation import evaluate_features
from scwm.models import load_model
from training.features import extract

EMBEDDINGS = ("global", "parts", "global+parts")


def combine(global_feat: torch.Tensor, part_feats: torch.Tensor, kind: str) -> torch.Tensor:
    """The retrieval embedding ``kind`` from L2-normalized ``global (N, D)`` and ``parts (N, P, D)``."""
    if kind == "global":
        return global_feat
    parts = part_feats.flatten(1)
    if kind == "parts":
        return F.normalize(parts, dim=1)
    if kind == "global+parts":
        return F.normalize(torch.cat([global_feat, parts / part_feats.shape[1] ** 0.5], 1), dim=1)
    raise ValueError(f"unknown embedding {kind!r}; choose from {EMBEDDINGS}")


def score_model(path: Path, root: Path, batch_size: int = 128) -> dict[str, dict[str, float]]:
    """mAP and Rank-1 of each embedding for the model at ``path`` on the dataset at ``root``."""
    model, spec = load_model(path)
    ds = load_dataset("synthetic", root)

    def embed(records):
        tf = EvalTransform(spec.height, spec.width, spec.mean, spec.std)
        loader = DataLoader(ReIDImageDataset(records, tf), batch_size=batch_size,
                            collate_fn=collate_skip_none)
        f = extract(model, loader, torch.device("cpu"), progress=False)
        kept = [records[i] for i in f["index"].numpy()]
        return f["global"], f["parts"], np.array([r.pid for r in kept]), np.array([r.camid for r in kept])

    qg, qp, q_pids, q_cams = embed(ds.query)
    gg, gp, g_pids, g_cams = embed(ds.gallery)
    out = {}
    for kind in EMBEDDINGS:
        res = evaluate_features(combine(qg, qp, kind), combine(gg, gp, kind), q_pids, g_pids, q_cams, g_cams,
                                max_rank=min(50, len(g_pids)))
        out[kind] = {"mAP": float(res.mAP), "rank1": float(res.rank1)}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/experiments/runs/market", help="harness results of one target")
    p.add_argument("--experiments", nargs="+", default=["t1-baseline", "t1-wm-parsing", "t1-wm-scc", "t2-oracle"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--data-root", default="data/synthetic/market-seed0")
    p.add_argument("--out", default="experiments/results/analyses/part_embeddings.json")
    p.add_argument("--markdown", default="docs/bench/part_embeddings.md")
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    for exp, seed, path in trained_models(args.runs, args.experiments, args.seeds):
        results.setdefault(exp, {})[str(seed)] = score_model(path, Path(args.data_root))
        print(exp, seed, {k: round(100 * v["mAP"], 1) for k, v in results[exp][str(seed)].items()}, flush=True)
    lines = ["## Retrieval with part features (trained harness models)", "",
             f"Command: `python -m experiments.analyses.part_embeddings --runs {args.runs} --experiments "
             f"{' '.join(args.experiments)} --seeds {' '.join(map(str, args.seeds))}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}. mAP in % on the synthetic query/gallery "
             "split, mean over the seeds found (individual seeds in brackets). The paper ranks with the global "
             "embedding only (the \"global\" column is the harness's figure); \"parts\" concatenates the l-1 part "
             "embeddings, \"global+parts\" adds the global one.", "",
             "| experiment | seeds | " + " | ".join(f"mAP {k}" for k in EMBEDDINGS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in EMBEDDINGS) + " |"]
    for exp, per_seed in results.items():
        cells = []
        for kind in EMBEDDINGS:
            vals = [100 * r[kind]["mAP"] for r in per_seed.values()]
            cells.append(f"{np.mean(vals):.1f} [{' / '.join(f'{v:.1f}' for v in vals)}]")
        lines.append(f"| {exp} | {len(per_seed)} | " + " | ".join(cells) + " |")
    write_outputs(results, args.out, args.markdown, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()

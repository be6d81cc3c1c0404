"""Quality of the pseudo identities (Jaccard + DBSCAN) against the synthetic ground truth, per eps.

Global features of one checkpoint (by default the source-pretrained backbone every synthetic run starts
from) on a preset's training images; for each ``eps``: number of clusters, share of images clustered,
and NMI / ARI of the clustered images against the true identities. This is the first clustering stage
of every run, so it shows how pure the first epoch's training targets are.

    python -m experiments.analyses.pseudo_labels --presets market msmt --eps 0.3 0.35 0.4 0.45 0.5 0.6 0.7
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch.utils.data import DataLoader

from experiments.analyses import write_outputs
from scwm.clustering import pseudo_labels
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.models import load_model
from training.datasets import ensure_synthetic
from training.features import extract


def cluster_quality(labels: np.ndarray, pids: np.ndarray) -> dict[str, float]:
    """Clusters, clustered fraction and NMI / ARI over the clustered samples (label -1 = outlier)."""
    clustered = labels >= 0
    out = {"clusters": int(labels.max()) + 1 if labels.size else 0, "clustered": float(clustered.mean()),
           "nmi": float("nan"), "ari": float("nan")}
    if clustered.sum() > 1:
        out["nmi"] = float(normalized_mutual_info_score(pids[clustered], labels[clustered]))
        out["ari"] = float(adjusted_rand_score(pids[clustered], labels[clustered]))
    return out


def features(checkpoint: str, root: Path) -> tuple[torch.Tensor, np.ndarray]:
    model, spec = load_model(checkpoint)
    records = load_dataset("synthetic", root).train
    tf = EvalTransform(spec.height, spec.width, spec.mean, spec.std)
    loader = DataLoader(ReIDImageDataset(records, tf), batch_size=128,
                        collate_fn=collate_skip_none)
    f = extract(model, loader, torch.device("cpu"), progress=False)
    return f["global"], np.asarray([records[i].pid for i in f["index"].numpy()])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="data/pretrained/source-resnet18-128x64.pt")
    p.add_argument("--presets", nargs="+", default=["market"])
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--eps", type=float, nargs="+", default=[0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7])
    p.add_argument("--min-samples", type=int, default=4)
    p.add_argument("--k1", type=int, default=30)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--out", default="experiments/results/analyses/pseudo_labels.json")
    p.add_argument("--markdown", default="docs/bench/pseudo_labels.md")
    args = p.parse_args(argv)
    results: dict[str, dict] = {}
    lines = ["## Pseudo-identity quality per eps (first clustering stage)", "",
             f"Command: `python -m experiments.analyses.pseudo_labels --checkpoint {args.checkpoint} "
             f"--presets {' '.join(args.presets)} --eps {' '.join(f'{e:g}' for e in args.eps)}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}. k-reciprocal Jaccard distance (k1 = "
             f"{args.k1}, k2 = {args.k2}) + DBSCAN (min_samples = {args.min_samples}) on the checkpoint's global "
             "features of the training images; NMI / ARI over the clustered images against the true identities.",
             ""]
    for preset in args.presets:
        root = ensure_synthetic(Path(args.data_dir) / f"{preset}-seed0", preset, 0, progress=False)
        g, pids = features(args.checkpoint, root)
        k1, k2 = min(args.k1, len(g) - 1), min(args.k2, len(g) - 1)
        res = {f"{eps:g}": cluster_quality(pseudo_labels(g, eps, args.min_samples, k1, k2), pids) for eps in args.eps}
        results[preset] = {"images": len(pids), "identities": len(set(pids.tolist())), "eps": res}
        lines += [f"### `{preset}` ({len(pids)} images, {len(set(pids.tolist()))} identities)", "",
                  "| eps | clusters | clustered | NMI | ARI |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {e} | {r['clusters']} | {r['clustered']:.2f} | {r['nmi']:.3f} | {r['ari']:.3f} |"
                  for e, r in res.items()]
        lines.append("")
    write_outputs(results, args.out, args.markdown, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()

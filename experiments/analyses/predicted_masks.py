"""What the trained part head G predicts: overlap between its part maps and agreement with the truth.

The paper's Fig. 4 shows that without the diversity loss (Eq. 5) the part maps predicted by G "tend to
be the same for each part". This benchmark measures that on the harness's trained models, on target
**train** images with ground-truth masks:

* **similarity**: mean pairwise cosine between the foreground part maps of an image
  (:func:`scwm.parsing.part_map_similarity`; 1 = every part covers the same cells);
* **Eq. 5**: the diversity term itself (pixel-mean, background included, as trained);
* **mass / argmax share**: mean probability of each channel, and the share of cells where it wins;
* **fg IoU / part mIoU** of the argmax masks against the ground truth (one Hungarian assignment over
  the set, as for the pseudo masks), and the feature-norm AUC of the same backbone;
* **targets**: the part mIoU of the oracle labels (the ground truth pooled to the map, what ``t2-oracle``
  trains G on), and **probe**: a fresh head of G's shape fitted to those labels on the frozen feature maps
  of half the images and scored on the other half: what the trunk supports, against what G learned; and
  **layout**: every held-out cell given the most frequent oracle label of its grid position in the fitting
  half, the score of position alone (what a probe that reads only the maps' positional profile would get).

    python -m experiments.analyses.predicted_masks --runs runs/experiments/runs/market \\
        --experiments t1-wm-parsing t1-wm-scc t2-oracle --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from experiments.analyses import trained_models, write_outputs
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.losses.parsing import diversity_loss
from scwm.models import load_model
from scwm.parsing import NUM_GT_LABELS, ParsingConfusion, binary_auc, norm_cue_cells, part_map_similarity
from scwm.parsing.oracle import oracle_part_labels

PROBE_STEPS = 600
"""Full-batch Adam steps of the probe (its training loss is near its floor by then on the synthetic worlds)."""


def fit_part_probe(fmaps: Tensor, labels: Tensor, num_parts: int, steps: int = PROBE_STEPS, lr: float = 1e-3,
                   seed: int = 0) -> nn.Conv2d:
    """A fresh 3x3 convolution (the shape of the part head G, Sec. 3.1) fitted by full-batch Adam with cross
    entropy to per-cell labels ``(N, h, w)`` in ``[0, num_parts)`` on frozen feature maps ``(N, C, h, w)``."""
    if fmaps.dim() != 4 or labels.shape != (fmaps.shape[0], *fmaps.shape[2:]):
        raise ValueError(f"expected (N, C, h, w) maps and (N, h, w) labels, got {tuple(fmaps.shape)} and "
                         f"{tuple(labels.shape)}")
    gen = torch.Generator().manual_seed(seed)
    head = nn.Conv2d(fmaps.shape[1], num_parts, kernel_size=3, padding=1)
    with torch.no_grad():
        for w in (head.weight, head.bias):
            w.copy_(torch.empty_like(w).uniform_(-0.01, 0.01, generator=gen))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    x, y = fmaps.detach().float(), labels.long()
    for _ in range(steps):
        loss = nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def score_model(path: Path, root: Path, max_images: int = 600, batch_size: int = 64, probe: bool = True) -> dict:
    """Predicted-mask statistics of the model at ``path`` on up to ``max_images`` train images of ``root``;
    ``probe`` adds the targets' score and the held-out score of :func:`fit_part_probe` (even images fit it, odd
    ones score it)."""
    model, spec = load_model(path)
    if spec.part_mode != "learned":
        raise ValueError(f"{path}: part_mode={spec.part_mode!r} has no learned part head to measure")
    records = [r for r in load_dataset("synthetic", root).train if r.mask_path]
    if not records:
        raise ValueError(f"{root}: no training image has a ground-truth mask")
    if len(records) > max_images:
        keep = np.random.default_rng(0).choice(len(records), max_images, replace=False)
        records = [records[i] for i in sorted(keep)]
    tf = EvalTransform(spec.height, spec.width, spec.mean, spec.std)
    loader = DataLoader(ReIDImageDataset(records, tf, use_gt_masks=True),
                        batch_size=batch_size, collate_fn=collate_skip_none)
    l = spec.num_parts  # noqa: E741 - the paper's symbol
    conf = ParsingConfusion(l, NUM_GT_LABELS, l - 1)
    conf_targets = ParsingConfusion(l, NUM_GT_LABELS, l - 1)
    sims, div, mass, wins, norms, body = [], [], [], [], [], []
    fmaps, targets, gts = [], [], []
    with torch.no_grad():
        for batch in loader:
            out = model(batch["image"])
            probs = out.part_probs.float()
            labels = probs.argmax(1)
            conf.update(labels, batch["mask"])
            if probe:
                fmaps.append(out.feature_map.float())
                targets.append(oracle_part_labels(batch["mask"], l, tuple(out.feature_map.shape[2:])))
                gts.append(batch["mask"])
                conf_targets.update(targets[-1], batch["mask"])
            sims.append(part_map_similarity(probs))
            div.append(diversity_loss(probs).reshape(1) * probs.shape[0])
            mass.append(probs.sum((0, 2, 3)) / (probs.shape[2] * probs.shape[3]))
            wins.append(torch.bincount(labels.flatten(), minlength=l).double() / labels[0].numel())
            nrm, is_body = norm_cue_cells(out.feature_map, batch["mask"])
            norms.append(nrm)
            body.append(is_body)
    n = sum(len(s) for s in sims)
    s = conf.scores()
    extra: dict[str, float] = {}
    if probe and n >= 2:
        f, t, g = torch.cat(fmaps), torch.cat(targets), torch.cat(gts)
        head = fit_part_probe(f[0::2], t[0::2], l)
        conf_probe = ParsingConfusion(l, NUM_GT_LABELS, l - 1)
        with torch.no_grad():
            conf_probe.update(head(f[1::2]).argmax(1), g[1::2])
        layout = torch.mode(t[0::2], dim=0).values  # (h, w): the commonest label at each grid position
        conf_layout = ParsingConfusion(l, NUM_GT_LABELS, l - 1)
        conf_layout.update(layout.expand(len(g[1::2]), -1, -1), g[1::2])
        probe_scores = conf_probe.scores()
        extra = {"targets_part_miou": conf_targets.scores()["part_miou"],
                 "layout_part_miou": conf_layout.scores()["part_miou"],
                 "probe_part_miou": probe_scores["part_miou"], "probe_fg_iou": probe_scores["fg_iou"]}
    return {
        "images": n,
        "similarity": float(torch.cat(sims).mean()),
        "eq5": float(torch.cat(div).sum() / n),
        "mass": (torch.stack(mass).sum(0) / n).tolist(),
        "argmax_share": (torch.stack(wins).sum(0) / n).tolist(),
        "fg_iou": s["fg_iou"],
        "part_miou": s["part_miou"],
        "norm_auc": binary_auc(torch.cat(norms), torch.cat(body)),
        **extra,
    }


def _fmt(vals: list[float], digits: int = 2) -> str:
    return f"{np.mean(vals):.{digits}f} [{' / '.join(f'{v:.{digits}f}' for v in vals)}]"


def _opt(rs: list[dict], key: str) -> str:
    vals = [r[key] for r in rs if key in r]
    return _fmt(vals, 3) if len(vals) == len(rs) else "-"


def to_markdown(results: dict[str, dict[str, dict]], args: argparse.Namespace) -> str:
    lines = ["## Part maps predicted by the trained part head (harness models)", "",
             f"Command: `python -m experiments.analyses.predicted_masks --runs {args.runs} --experiments "
             f"{' '.join(results) or ' '.join(args.experiments)} --seeds {' '.join(map(str, args.seeds))} "
             f"--data-root {args.data_root} "
             f"--max-images {args.max_images}{' --no-probe' if args.no_probe else ''}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}. Target train images with ground-truth "
             "masks; mean over seeds, individual seeds in brackets. similarity = mean pairwise cosine between "
             "the foreground part maps of an image (1 = all parts cover the same cells); Eq. 5 = the diversity "
             "term as trained (background included, pixel mean); fg share = share of cells whose argmax is a "
             "foreground part; largest part share = the share of the most-winning foreground part; fg IoU / "
             "part mIoU of the argmax masks against the ground truth; norm AUC = feature-norm cue of step 1; "
             "targets = part mIoU of the ground truth pooled to the map (the oracle labels); probe = a fresh "
             "3x3 head fitted to those labels on the frozen maps of half the images, part mIoU on the other half; "
             "layout = each held-out cell given the commonest oracle label of its position in the fitting half.",
             "", "| experiment | seeds | similarity | Eq. 5 | fg share | largest part share | fg IoU | part mIoU "
             "| norm AUC | targets | probe | layout |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for exp, per_seed in results.items():
        rs = list(per_seed.values())
        fg_share = [1 - r["argmax_share"][-1] for r in rs]
        top = [max(r["argmax_share"][:-1]) for r in rs]
        lines.append(f"| {exp} | {len(rs)} | {_fmt([r['similarity'] for r in rs])} | "
                     f"{_fmt([r['eq5'] for r in rs], 3)} | {_fmt(fg_share)} | {_fmt(top)} | "
                     f"{_fmt([r['fg_iou'] for r in rs])} | {_fmt([r['part_miou'] for r in rs], 3)} | "
                     f"{_fmt([r['norm_auc'] for r in rs])} | {_opt(rs, 'targets_part_miou')} | "
                     f"{_opt(rs, 'probe_part_miou')} | {_opt(rs, 'layout_part_miou')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/experiments/runs/market", help="harness results of one target")
    p.add_argument("--experiments", nargs="+", default=["t1-wm-parsing", "t1-wm-scc", "t2-oracle"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data-root", default="data/synthetic/market-seed0")
    p.add_argument("--max-images", type=int, default=600)
    p.add_argument("--no-probe", action="store_true", help="skip the targets' score and the probe on frozen maps")
    p.add_argument("--out", default="experiments/results/analyses/predicted_masks.json")
    p.add_argument("--markdown", default="docs/bench/predicted_masks.md")
    p.add_argument("--merge", action="store_true",
                   help="keep the experiments already in --out that are not measured again (models are not "
                        "committed, so earlier rows cannot always be re-measured)")
    args = p.parse_args(argv)
    if args.max_images < 1:
        p.error(f"--max-images must be >= 1, got {args.max_images}")
    results: dict[str, dict] = {}
    if args.merge and Path(args.out).is_file():
        results = {k: v for k, v in json.loads(Path(args.out).read_text()).items() if k not in args.experiments}
    for exp, seed, path in trained_models(args.runs, args.experiments, args.seeds):
        r = score_model(path, Path(args.data_root), args.max_images, probe=not args.no_probe)
        results.setdefault(exp, {})[str(seed)] = r
        print(exp, seed, {k: round(v, 3) for k, v in r.items() if isinstance(v, float)}, flush=True)
    write_outputs(results, args.out, args.markdown, to_markdown(results, args))
    return results


if __name__ == "__main__":
    main()

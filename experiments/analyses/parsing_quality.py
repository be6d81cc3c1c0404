"""Parsing quality of pseudo part masks against the synthetic ground truth (issue: clustering stage, §4).

Feature maps come from a trained backbone (by default the source-pretrained checkpoint the synthetic
run starts from); pseudo masks from the four cascaded-clustering variants of the paper's Table 2, from
PCB-style horizontal stripes, from the ground truth itself pooled to the feature grid (oracle: the
ceiling at that resolution), from step 2 of cascaded clustering and SCC alone (step 1's norm cue replaced by
the ground-truth foreground: how much of the gap to the oracle the cue costs), from SCC with step 1's rule
on the class activation map of each image's true identity (``scwm.parsing.cues.identity_activation_map``), and
from an eta and l sweep of SCC. ``--sizes`` feeds the same weights
larger inputs, which gives finer feature maps (16x8 at 256x128). Scores (``scwm.parsing``): foreground
IoU and part mIoU after one Hungarian assignment of predicted parts to GT parts over the whole dataset.
The eta sweep is run twice: with the default ``far_pairs="constant"`` and with ``"feature"`` (merges past
Eq. 2's infinity ordered by feature distance, ``scwm/parsing/cascaded.py``).

    python -m experiments.analyses.parsing_quality --checkpoint zoo/plip-resnet18-128x64.pt \
        --presets market msmt --max-images 1200 --sizes 128x64 256x128
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from experiments.analyses import feature_model, neck_cells
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.parsing import (
    NUM_GT_LABELS,
    ParsingConfusion,
    binary_auc,
    foreground_from_cue,
    horizontal_stripes,
    norm_cue_cells,
    oracle_part_labels,
    spatial_cascaded_clustering,
)
from scwm.parsing.cues import identity_activation_map, identity_directions
from training.config import ZOO_SOURCE
from training.datasets import ensure_synthetic

DEFAULT_MARKDOWN = "docs/bench/parsing_quality.md"
DEFAULT_ETAS = [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, math.inf]
DEFAULT_PARTS = [3, 4, 5, 6, 7]
DEFAULT_TITLE = "Parsing quality with a trained backbone (synthetic ground truth)"


def _cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def variants(num_parts: int, eta: float, etas: list[float], parts: list[int],
             eta_parts: list[int] | None = None) -> dict[str, dict]:
    """The pseudo-mask sources to score. ``eta_parts``: the l values of the eta sweeps (default: ``num_parts``);
    each far-pairs row names the constant-mode row of the same eta and l it is compared with (``base``)."""
    v: dict[str, dict] = {
        "stripes (PPLR baseline)": {"stripes": True, "l": num_parts},
        "ground truth pooled (oracle)": {"oracle": True, "l": num_parts},
        "original cascaded (ISP)": {"fg": False, "space": False, "l": num_parts, "eta": eta},
        "foreground correction": {"fg": True, "space": False, "l": num_parts, "eta": eta},
        "space correction": {"fg": False, "space": True, "l": num_parts, "eta": eta},
        "both corrections (SCC)": {"fg": True, "space": True, "l": num_parts, "eta": eta},
        # step 2 alone: step 1 replaced by the ground-truth foreground pooled to the grid (upper bound of a cue)
        "original cascaded, ground-truth foreground": {"fg": False, "space": False, "l": num_parts, "eta": eta,
                                                       "gt_fg": True},
        "SCC, ground-truth foreground": {"fg": True, "space": True, "l": num_parts, "eta": eta, "gt_fg": True},
        # step 1's rule on another cue: the CAM of each image's identity (scwm.parsing.cues, true identities)
        "SCC, identity-CAM foreground": {"fg": True, "space": True, "l": num_parts, "eta": eta, "cam_fg": True},
    }
    for lp in eta_parts or [num_parts]:
        tag = "" if lp == num_parts else f", l={lp}"
        for e in etas:
            v[f"SCC eta={e:g}{tag}"] = {"fg": True, "space": True, "l": lp, "eta": e, "sweep": "eta"}
        for e in etas:  # the same sweep with merges past infinity ordered by feature distance (far_pairs)
            if math.isfinite(e):
                v[f"SCC eta={e:g}{tag}, far pairs by feature"] = {
                    "fg": True, "space": True, "l": lp, "eta": e, "sweep": "eta_feature", "far_pairs": "feature",
                    "base": f"SCC eta={e:g}{tag}"}
    for p in parts:
        v[f"SCC l={p}"] = {"fg": True, "space": True, "l": p, "eta": eta, "sweep": "l"}
    return v


def score(conf: ParsingConfusion) -> dict[str, float]:
    s = conf.scores()
    matched = [s["part_iou"][g] for g in s["assignment"].values()]
    return {"fg_iou": s["fg_iou"], "part_miou": s["part_miou"],
            "matched_miou": float(np.mean(matched)) if matched else float("nan"),
            "assignment": {int(k): int(v) for k, v in s["assignment"].items()}}


def _identity_directions(model: torch.nn.Module, loader: DataLoader, n: int) -> torch.Tensor:
    """``(n, C)`` CAM weights of every image's true identity over the whole sample (a first pass)."""
    feats, pids, index = [], [], []
    with torch.no_grad():
        for batch in loader:
            feats.append(model(batch["image"]).global_feat.float())
            pids.append(torch.as_tensor(batch["pid"]))
            index.append(torch.as_tensor(batch["index"]))
    out = torch.zeros(n, feats[0].shape[1])
    out[torch.cat(index)] = identity_directions(torch.cat(feats), torch.cat(pids))
    return out


def _given_foreground(v: dict, body: torch.Tensor, model: torch.nn.Module, fmap: torch.Tensor,
                      directions: torch.Tensor | None, batch: dict) -> torch.Tensor | None:
    """The foreground a variant gives step 1 (None = the norm cue): the ground truth, or step 1's rule on the
    identity CAM shifted to be non-negative."""
    if v.get("gt_fg"):
        return body
    if v.get("cam_fg") and directions is not None:
        cam = identity_activation_map(neck_cells(model, fmap), directions[torch.as_tensor(batch["index"])])
        return foreground_from_cue(cam - cam.amin((1, 2), keepdim=True), v["fg"])
    return None


def run_preset(model: torch.nn.Module, spec, preset: str, size: tuple[int, int],
               args: argparse.Namespace) -> dict[str, dict]:
    root = ensure_synthetic(Path(args.data_dir) / f"{preset}-seed0", preset, 0, progress=False)
    records = load_dataset("synthetic", root).train
    rng = np.random.default_rng(0)
    if len(records) > args.max_images:
        records = [records[i] for i in sorted(rng.choice(len(records), args.max_images, replace=False))]
    tf = EvalTransform(*size, mean=spec.mean, std=spec.std)
    loader = DataLoader(ReIDImageDataset(records, tf, use_gt_masks=True),
                        batch_size=64, num_workers=2, collate_fn=collate_skip_none)
    vs = variants(spec.num_parts, args.eta, args.etas, args.parts, args.eta_parts)
    confs = {name: ParsingConfusion(v["l"], NUM_GT_LABELS, None if v.get("stripes") else v["l"] - 1)
             for name, v in vs.items()}
    times = dict.fromkeys(vs, 0.0)
    fg_cells = dict.fromkeys(vs, 0)
    changed = {name: [0, 0, 0, 0] for name, v in vs.items() if "base" in v}  # cells, fg cells, images, all
    total_cells = 0
    norms, is_fg = [], []  # per feature cell: max-normalized norm, majority GT label is body
    directions = _identity_directions(model, loader, len(records)) if any(v.get("cam_fg") for v in vs.values()) \
        else None
    with torch.no_grad():
        for batch in loader:
            fmap = model(batch["image"]).feature_map
            b, _, h, w = fmap.shape
            nrm, body = norm_cue_cells(fmap, batch["mask"])
            norms.append(nrm)
            is_fg.append(body)
            total_cells += b * h * w
            labels: dict[str, torch.Tensor] = {}
            for name, v in vs.items():
                tic = time.time()
                if v.get("stripes"):
                    lab = horizontal_stripes(b, h, w, v["l"])
                elif v.get("oracle"):
                    lab = oracle_part_labels(batch["mask"], v["l"], (h, w))
                else:
                    lab = spatial_cascaded_clustering(fmap, v["l"], eta=v["eta"], foreground_correction=v["fg"],
                                                      space_correction=v["space"],
                                                      far_pairs=v.get("far_pairs", "constant"),
                                                      foreground=_given_foreground(v, body, model, fmap,
                                                                                   directions, batch))
                times[name] += time.time() - tic
                confs[name].update(lab, batch["mask"])
                fg_cells[name] += b * h * w if v.get("stripes") else int((lab != v["l"] - 1).sum())
                labels[name] = lab
                if "base" in v:  # how much the far-pairs order changes the constant mode's labels
                    ref = labels[v["base"]]
                    diff, fg = lab != ref, ref != v["l"] - 1
                    changed[name][0] += int((diff & fg).sum())
                    changed[name][1] += int(fg.sum())
                    changed[name][2] += int(diff.flatten(1).any(1).sum())
                    changed[name][3] += b
    out = {}
    for name, v in vs.items():
        out[name] = {**score(confs[name]), "seconds": times[name], "l": v["l"],
                     "eta": v.get("eta"), "sweep": v.get("sweep"), "fg_fraction": fg_cells[name] / total_cells}
        if name in changed:
            c = changed[name]
            out[name]["changed_fg_cells"] = c[0] / max(c[1], 1)
            out[name]["changed_images"] = c[2] / max(c[3], 1)
    y, x = torch.cat(is_fg), torch.cat(norms)
    out["_meta"] = {"norm_auc": binary_auc(x, y), "gt_fg_fraction": float(y.float().mean()),
                    "images": len(records), "feature_map": [h, w],
                    "input": list(size), "preset": preset, "checkpoint": args.current_checkpoint}
    return out


def to_markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        f"## {args.title}", "",
        f"Command: `python -m experiments.analyses.parsing_quality --checkpoint {' '.join(args.checkpoint)} "
        f"--presets {' '.join(args.presets)} --max-images {args.max_images}"
        + (f" --sizes {' '.join(args.sizes)}" if args.sizes else "")
        + (f" --eta-parts {' '.join(map(str, args.eta_parts))}" if args.eta_parts else "")
        + ("" if args.etas == DEFAULT_ETAS else f" --etas {' '.join(f'{e:g}' for e in args.etas)}")
        + ("" if args.parts == DEFAULT_PARTS else f" --parts {' '.join(map(str, args.parts))}")
        + ("" if args.markdown == DEFAULT_MARKDOWN else f" --out {args.out} --markdown {args.markdown}")
        + ("" if args.title == DEFAULT_TITLE else f" --title '{args.title}'") + "`  ",
        f"Machine: {platform.machine()} ({_cpu_name()}), 2 CPU cores, torch {torch.__version__}. Feature maps of each "
        "checkpoint (the source-pretrained backbone never saw the target presets) on target **train** images; "
        "fg IoU = predicted foreground vs GT body; part mIoU = mean IoU over the 5 GT body labels after one "
        "Hungarian assignment over the whole set (unmatched GT labels count 0, so with l-1 predicted parts "
        "the ceiling is (l-1)/5); matched mIoU = mean over the assigned pairs only; fg fraction = share of "
        "feature cells called foreground (stripes: all). Norm AUC: how well the per-cell feature norm "
        "(the cue of step 1) ranks body cells (majority of pixels body) above background cells; 0.5 = no "
        "signal, below 0.5 = the background responds more. Changed vs constant far pairs: share of the "
        "constant mode's foreground cells, and of images, whose label differs with `far_pairs=\"feature\"` "
        "at the same eta and l.", "",
    ]
    for res in results.values():
        meta = res["_meta"]
        lines += [f"### `{meta['checkpoint']}` on `{meta['preset']}`, input {meta['input'][0]}x{meta['input'][1]} "
                  f"({meta['images']} images, "
                  f"feature map {meta['feature_map'][0]}x{meta['feature_map'][1]})", "",
                  f"Feature-norm AUC (body vs background cells): {meta['norm_auc']:.3f}; body cells: "
                  f"{meta['gt_fg_fraction']:.2f} of all cells.", "",
                  "| pseudo masks | l | eta | fg IoU | fg fraction | part mIoU | matched mIoU | time (s) "
                  "| changed vs constant far pairs: fg cells / images |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in res.items():
            if name == "_meta":
                continue
            eta = "-" if r["eta"] is None else ("inf" if math.isinf(r["eta"]) else f"{r['eta']:g}")
            lines.append(f"| {name} | {r['l']} | {eta} | {r['fg_iou']:.3f} | {r['fg_fraction']:.2f} | "
                         f"{r['part_miou']:.3f} | "
                         f"{r['matched_miou']:.3f} | {r['seconds']:.1f} | "
                         + (f"{100 * r['changed_fg_cells']:.1f}% / {100 * r['changed_images']:.1f}% |"
                            if "changed_fg_cells" in r else "- |"))
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", nargs="+", default=[ZOO_SOURCE],
                   help="one or more model files (e.g. the source-pretrained backbone and a trained run's model.pt)")
    p.add_argument("--presets", nargs="+", default=["market", "msmt"])
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--max-images", type=int, default=1200)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--etas", type=float, nargs="*", default=DEFAULT_ETAS)
    p.add_argument("--parts", type=int, nargs="*", default=DEFAULT_PARTS)
    p.add_argument("--eta-parts", type=int, nargs="*", default=None,
                   help="l values of the eta sweeps (default: the checkpoint's l)")
    p.add_argument("--sizes", nargs="+", default=None,
                   help="input sizes HxW to feed the same weights (default: the checkpoint's own size)")
    p.add_argument("--out", default="experiments/results/analyses/parsing_quality.json")
    p.add_argument("--markdown", default=DEFAULT_MARKDOWN)
    p.add_argument("--title", default=DEFAULT_TITLE, help="heading of the markdown section")
    args = p.parse_args(argv)
    sizes = []
    for text in args.sizes or []:
        try:
            hh, ww = (int(t) for t in text.lower().split("x"))
        except ValueError:
            p.error(f"--sizes: {text!r} is not HxW (e.g. 256x128)")
        sizes.append((hh, ww))
    results = {}
    for ckpt in args.checkpoint:
        model, spec = feature_model(ckpt)
        args.current_checkpoint = ckpt
        for preset in args.presets:
            for hh, ww in sizes or [(spec.height, spec.width)]:
                results[f"{ckpt}:{preset}@{hh}x{ww}"] = run_preset(model, spec, preset, (hh, ww), args)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    md = to_markdown(results, args)
    Path(args.markdown).write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()

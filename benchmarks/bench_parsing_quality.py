"""Parsing quality of pseudo part masks against the synthetic ground truth (issue: clustering stage, §4).

Feature maps come from a trained backbone (by default the source-pretrained checkpoint the synthetic
run starts from); pseudo masks from the four cascaded-clustering variants of the paper's Table 2, from
PCB-style horizontal stripes, and from an eta and l sweep of SCC. Scores (``scwm.parsing``): foreground
IoU and part mIoU after one Hungarian assignment of predicted parts to GT parts over the whole dataset.

    python -m benchmarks.bench_parsing_quality --checkpoint data/pretrained/source-resnet18-128x64.pt \
        --presets market msmt --max-images 1200
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

from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.models import load_model
from scwm.parsing import ParsingConfusion, horizontal_stripes, spatial_cascaded_clustering
from training.common import ensure_synthetic

GT_LABELS = 6


def variants(num_parts: int, eta: float, etas: list[float], parts: list[int]) -> dict[str, dict]:
    v: dict[str, dict] = {
        "stripes (PPLR baseline)": {"stripes": True, "l": num_parts},
        "original cascaded (ISP)": {"fg": False, "space": False, "l": num_parts, "eta": eta},
        "foreground correction": {"fg": True, "space": False, "l": num_parts, "eta": eta},
        "space correction": {"fg": False, "space": True, "l": num_parts, "eta": eta},
        "both corrections (SCC)": {"fg": True, "space": True, "l": num_parts, "eta": eta},
    }
    for e in etas:
        v[f"SCC eta={e:g}"] = {"fg": True, "space": True, "l": num_parts, "eta": e, "sweep": "eta"}
    for p in parts:
        v[f"SCC l={p}"] = {"fg": True, "space": True, "l": p, "eta": eta, "sweep": "l"}
    return v


def score(conf: ParsingConfusion) -> dict[str, float]:
    s = conf.scores()
    matched = [s["part_iou"][g] for g in s["assignment"].values()]
    return {"fg_iou": s["fg_iou"], "part_miou": s["part_miou"],
            "matched_miou": float(np.mean(matched)) if matched else float("nan"),
            "assignment": {int(k): int(v) for k, v in s["assignment"].items()}}


def run_preset(model: torch.nn.Module, spec, preset: str, args: argparse.Namespace) -> dict[str, dict]:
    root = ensure_synthetic(Path(args.data_dir) / f"{preset}-seed0", preset, 0, progress=False)
    records = load_dataset("synthetic", root).train
    rng = np.random.default_rng(0)
    if len(records) > args.max_images:
        records = [records[i] for i in sorted(rng.choice(len(records), args.max_images, replace=False))]
    loader = DataLoader(ReIDImageDataset(records, EvalTransform(spec.height, spec.width), use_gt_masks=True),
                        batch_size=64, num_workers=2, collate_fn=collate_skip_none)
    vs = variants(spec.num_parts, args.eta, args.etas, args.parts)
    confs = {name: ParsingConfusion(v["l"], GT_LABELS, None if v.get("stripes") else v["l"] - 1)
             for name, v in vs.items()}
    times = dict.fromkeys(vs, 0.0)
    with torch.no_grad():
        for batch in loader:
            fmap = model(batch["image"]).feature_map
            b, _, h, w = fmap.shape
            for name, v in vs.items():
                tic = time.time()
                if v.get("stripes"):
                    lab = horizontal_stripes(b, h, w, v["l"])
                else:
                    lab = spatial_cascaded_clustering(fmap, v["l"], eta=v["eta"], foreground_correction=v["fg"],
                                                      space_correction=v["space"])
                times[name] += time.time() - tic
                confs[name].update(lab, batch["mask"])
    out = {}
    for name, v in vs.items():
        out[name] = {**score(confs[name]), "seconds": times[name], "l": v["l"],
                     "eta": v.get("eta"), "sweep": v.get("sweep")}
    out["_meta"] = {"images": len(records), "feature_map": [h, w]}
    return out


def to_markdown(results: dict, args: argparse.Namespace) -> str:
    lines = [
        "## Parsing quality with a trained backbone (synthetic ground truth)", "",
        f"Command: `python -m benchmarks.bench_parsing_quality --checkpoint {args.checkpoint} "
        f"--presets {' '.join(args.presets)} --max-images {args.max_images}`  ",
        f"Machine: {platform.machine()}, 2 CPU cores, torch {torch.__version__}. Feature maps of the "
        "source-pretrained backbone (never trained on the target presets) on target **train** images; "
        "fg IoU = predicted foreground vs GT body; part mIoU = mean IoU over the 5 GT body labels after one "
        "Hungarian assignment over the whole set (unmatched GT labels count 0, so with l-1 predicted parts "
        "the ceiling is (l-1)/5); matched mIoU = mean over the assigned pairs only.", "",
    ]
    for preset, res in results.items():
        meta = res["_meta"]
        lines += [f"### `{preset}` ({meta['images']} images, feature map {meta['feature_map'][0]}x"
                  f"{meta['feature_map'][1]})", "",
                  "| pseudo masks | l | eta | fg IoU | part mIoU | matched mIoU | time (s) |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, r in res.items():
            if name == "_meta":
                continue
            eta = "-" if r["eta"] is None else ("inf" if math.isinf(r["eta"]) else f"{r['eta']:g}")
            lines.append(f"| {name} | {r['l']} | {eta} | {r['fg_iou']:.3f} | {r['part_miou']:.3f} | "
                         f"{r['matched_miou']:.3f} | {r['seconds']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="data/pretrained/source-resnet18-128x64.pt")
    p.add_argument("--presets", nargs="+", default=["market", "msmt"])
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--max-images", type=int, default=1200)
    p.add_argument("--eta", type=float, default=3.0)
    p.add_argument("--etas", type=float, nargs="*", default=[1.0, 1.5, 2.0, 3.0, 4.0, 6.0, math.inf])
    p.add_argument("--parts", type=int, nargs="*", default=[3, 4, 5, 6, 7])
    p.add_argument("--out", default="benchmarks/results/parsing_quality.json")
    p.add_argument("--markdown", default="docs/bench/parsing_quality.md")
    args = p.parse_args(argv)
    model, spec = load_model(args.checkpoint)
    results = {preset: run_preset(model, spec, preset, args) for preset in args.presets}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1, default=float))
    md = to_markdown(results, args)
    Path(args.markdown).write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()

"""Is the foreground cue of cascaded clustering's step 1 about content or about position?

Step 1 (ISP, and SCWM's foreground correction) calls a feature cell foreground when its feature norm is
large. ``fg_norm_auc`` (logged every clustering stage) measures how well the norm ranks body cells above
background cells, pooled over all cells of all images. A pooled AUC above 0.5 can come from two sources:

* **content**: at a given position, the norm is larger when a body covers the cell;
* **position**: the norm has a fixed spatial profile (zero padding, receptive fields clipped by the
  border) that overlaps where bodies usually are, the image centre, whatever the image shows.

Only the first helps parsing: a fixed profile gives every image the same "foreground" cells. This
benchmark separates them for each checkpoint, on target **train** images with ground-truth masks:

* **within-position AUC** (:func:`scwm.parsing.within_position_auc`): the AUC at each grid position
  separately, averaged over positions where bodies and background both occur (content only);
* **roll test**: the images and their masks are rolled horizontally by a quarter and a half of the
  width (the person moves to the border, background to the centre), and the pooled AUC and the mean
  norm map are measured again. If the norm follows the content, the rolled map equals the original map
  rolled (``corr(content)`` near 1); if it is positional, the rolled map equals the original map
  (``corr(position)`` near 1), and the pooled AUC swings with the roll.

    python -m experiments.analyses.norm_cue --checkpoint zoo/plip-resnet18-128x64.pt \\
        --presets market source --max-images 400 --sizes 128x64 256x128
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from experiments.analyses import feature_model, neck_cells
from scwm.data import EvalTransform, ReIDImageDataset, collate_skip_none, load_dataset
from scwm.parsing import binary_auc, norm_cue_cells, within_position_auc
from scwm.parsing.cues import (
    background_model_distance,
    cross_camera_match,
    identity_activation_map,
    identity_directions,
    position_normalized_norm,
)
from scwm.utils import atomic_write_bytes, atomic_write_json
from training.config import ZOO_SOURCE
from training.datasets import ensure_synthetic


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))


def alternative_cues(fmaps: torch.Tensor, cameras: torch.Tensor, body: torch.Tensor,
                     identities: torch.Tensor, cells: torch.Tensor, global_feats: torch.Tensor) -> dict:
    """Pooled and within-position AUC of the alternative cues of :mod:`scwm.parsing.cues`. The cross-camera
    match and the identity CAM are given the true identities (the best pseudo labels could do); the match is
    scored on the images that have another view of their identity from another camera in the sample."""
    match, has = cross_camera_match(fmaps, identities, cameras)
    cam = identity_activation_map(cells, identity_directions(global_feats, identities))
    cues = {"norm_over_position_mean": (position_normalized_norm(fmaps), body),
            "background_model_camera": (background_model_distance(fmaps, cameras), body),
            "background_model_all": (background_model_distance(fmaps), body),
            "cross_camera_match": (match[has], body[has]),
            "identity_cam": (cam, body)}
    return {name: {"auc": binary_auc(v, y), "within_position_auc": within_position_auc(v, y)[0],
                   "images": int(y.shape[0])} for name, (v, y) in cues.items()}


def cue_stats(model: torch.nn.Module, batches: list[dict], rolls: tuple[int, ...]) -> dict:
    """Pooled AUC, within-position AUC and mean max-normalized norm map for each horizontal roll (pixels)."""
    out: dict = {}
    maps: dict[int, torch.Tensor] = {}
    for r in rolls:
        norms, body, fmaps, cells, feats = [], [], [], [], []
        with torch.no_grad():
            for b in batches:
                x, m = torch.roll(b["image"], r, dims=-1), torch.roll(b["mask"], r, dims=-1)
                o = model(x)
                fmap = o.feature_map
                n, y = norm_cue_cells(fmap, m)
                norms.append(n)
                body.append(y)
                if r == rolls[0]:
                    fmaps.append(fmap.float())
                    cells.append(neck_cells(model, fmap))
                    feats.append(o.global_feat.float())
        nrm, y = torch.cat(norms), torch.cat(body)
        if fmaps:
            out["alternatives"] = alternative_cues(torch.cat(fmaps), torch.cat([b["camid"] for b in batches]), y,
                                                   torch.cat([torch.as_tensor(b["pid"]) for b in batches]),
                                                   torch.cat(cells), torch.cat(feats))
        within, positions = within_position_auc(nrm, y)
        maps[r] = nrm.mean(0)
        out[r] = {"auc": binary_auc(nrm, y), "within_position_auc": within, "positions": positions,
                  "column_profile": maps[r].mean(0).tolist(), "body_share_columns": y.float().mean((0, 1)).tolist()}
    h, w = maps[rolls[0]].shape
    grid_w = batches[0]["image"].shape[-1] / w
    for r in rolls[1:]:
        shift = round(r / grid_w)
        out[r]["corr_position"] = _corr(maps[r], maps[rolls[0]])
        out[r]["corr_content"] = _corr(maps[r], torch.roll(maps[rolls[0]], shift, dims=-1))
    out["feature_map"] = [h, w]
    return out


def run(checkpoints: list[str], presets: list[str], sizes: list[tuple[int, int]], max_images: int,
        data_dir: str) -> list[dict]:
    rows = []
    for preset in presets:
        root = ensure_synthetic(Path(data_dir) / f"{preset}-seed0", preset, 0, progress=False)
        records = load_dataset("synthetic", root).train
        rng = np.random.default_rng(0)
        if len(records) > max_images:
            records = [records[i] for i in sorted(rng.choice(len(records), max_images, replace=False))]
        for size in sizes:
            loader = DataLoader(ReIDImageDataset(records, EvalTransform(*size), use_gt_masks=True),
                                batch_size=64, num_workers=0, collate_fn=collate_skip_none)
            batches = [b for b in loader if b is not None]
            rolls = (0, size[1] // 4, size[1] // 2)
            for ck in checkpoints:
                model = feature_model(ck)[0]
                rows.append({"checkpoint": ck, "preset": preset, "input": list(size), "images": len(records),
                             "rolls": list(rolls), "stats": cue_stats(model, batches, rolls)})
    return rows


def to_markdown(rows: list[dict], command: str) -> str:
    lines = ["## Foreground cue of step 1: content or position?", "",
             f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, 2 CPU cores, torch {torch.__version__}. Target **train** images "
             "with ground-truth masks; a cell is body when most of its pixels are. AUC = pooled feature-norm AUC "
             "(body vs background cells; 0.5 = no signal); within-pos. = the AUC at each grid position "
             "separately, averaged over the positions where both occur (content only). Roll = images and "
             "masks rolled horizontally by W/4 and W/2 pixels. corr(pos.) / corr(content) = correlation of the "
             "rolled mean norm map with the original map / with the original map rolled along: near 1 for "
             "corr(pos.) means the norm map is a fixed spatial profile.", "",
             "| checkpoint | target | images | input | map | AUC | within-pos. AUC (positions) | AUC roll W/4 "
             "| AUC roll W/2 "
             "| corr(pos.) W/2 | corr(content) W/2 | mean norm per column |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        s, (r0, r1, r2) = row["stats"], row["rolls"]
        h, w = s["feature_map"]
        prof = " ".join(f"{v:.2f}" for v in s[r0]["column_profile"])
        lines.append(
            f"| `{row['checkpoint']}` | {row['preset']} | {row['images']} | "
            f"{row['input'][0]}x{row['input'][1]} | {h}x{w} | "
            f"{s[r0]['auc']:.3f} | {s[r0]['within_position_auc']:.3f} ({s[r0]['positions']}) | {s[r1]['auc']:.3f} | "
            f"{s[r2]['auc']:.3f} | {s[r2]['corr_position']:.2f} | {s[r2]['corr_content']:.2f} | {prof} |")
    lines += ["", "### Position-free alternatives to the norm (`scwm/parsing/cues.py`), same images, no roll", "",
              "Each compares a cell only with the cells at the same grid position in the other images: the norm "
              "over the mean norm there; the cosine distance to a background model (the mean normalised feature "
              "there over the other images of the same camera, or of all images). AUC pooled / within position. "
              "Only the within-position AUC is content: the pooled AUC of a distance also rewards the positions "
              "where the images differ most from each other, a spatial profile of its own. Cross-camera match "
              "(co-segmentation across views): the best cosine match of a cell among the cells of each other "
              "image of the same identity from another camera, averaged; given the true identities (the best "
              "pseudo labels could do), on the images with such a view in the sample (their number in brackets). "
              "Identity CAM: the class activation map of the image's identity, cells through the global BN neck "
              "scored against the identity's centroid minus the mean centroid (true identities).",
              "", "| checkpoint | target | input | norm / position mean | background model, per camera "
              "| background model, all images | cross-camera match (images) | identity CAM |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        alt = row["stats"].get("alternatives")
        if alt is None:
            continue
        cells = " | ".join(f"{v['auc']:.3f} / {v['within_position_auc']:.3f}"
                           + (f" ({v['images']})" if name == "cross_camera_match" else "")
                           for name, v in alt.items())  # column order
        lines.append(f"| `{row['checkpoint']}` | {row['preset']} | {row['input'][0]}x{row['input'][1]} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", nargs="+", default=[ZOO_SOURCE])
    p.add_argument("--presets", nargs="+", default=["market", "source"])
    p.add_argument("--sizes", nargs="+", default=["128x64"], help="input sizes HxW")
    p.add_argument("--max-images", type=int, default=400)
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--out", default="experiments/results/analyses/norm_cue.json")
    p.add_argument("--markdown", default="docs/bench/norm_cue.md")
    args = p.parse_args(argv)
    try:
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
        if any(len(s) != 2 for s in sizes):
            raise ValueError
    except ValueError:
        raise SystemExit(f"--sizes must look like 128x64, got {args.sizes}") from None
    rows = run(args.checkpoint, args.presets, sizes, args.max_images, args.data_dir)  # type: ignore[arg-type]
    command = ("python -m experiments.analyses.norm_cue --checkpoint " + " ".join(args.checkpoint) + " --presets "
               + " ".join(args.presets) + f" --max-images {args.max_images} --sizes " + " ".join(args.sizes))
    atomic_write_json(args.out, {"command": command, "rows": rows})
    md = to_markdown(rows, command)
    atomic_write_bytes(args.markdown, md.encode())
    print(md)


if __name__ == "__main__":
    main()

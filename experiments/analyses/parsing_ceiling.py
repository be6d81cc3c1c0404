"""The best part mIoU a mask at a given feature-map size can score, from the ground truth alone.

Pseudo masks (SCC, Sec. 3.2) and the part head's predictions (Eq. 4) live on the feature grid and are scored
at image resolution after nearest upsampling (:mod:`scwm.parsing.metrics`). The ground truth grouped into
``l - 1`` foreground parts and pooled to that grid by majority vote (:func:`scwm.parsing.oracle_part_labels`)
is then the ceiling: no mask of that size and part count does better except by chance of the assignment. The
table gives it for several map sizes beside PCB stripes (the baseline's parts), so a parsing target can be read
against what the map allows. No model is involved.

    python -m experiments.analyses.parsing_ceiling --presets market msmt --max-images 1200
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from experiments.analyses import write_outputs
from scwm.data import load_dataset
from scwm.data.images import load_mask
from scwm.parsing import NUM_GT_LABELS, ParsingConfusion, horizontal_stripes, oracle_part_labels
from training.datasets import ensure_synthetic

DEFAULT_SIZES = ("8x4", "16x8", "24x8", "32x16", "64x32", "full")
PRESET_PARTS = {"market": 4, "msmt": 7}
"""``model.num_parts`` (l) of each target in the harness (``experiments.registry.TARGETS``)."""


def ceiling_scores(gt: torch.Tensor, num_parts: int, size: tuple[int, int]) -> dict[str, float]:
    """Part mIoU and foreground IoU of the ground truth ``gt (N, H, W)`` pooled to ``size`` in ``num_parts``
    parts (the oracle), and the part mIoU of ``num_parts`` horizontal stripes on the same grid."""
    oracle = ParsingConfusion(num_parts, NUM_GT_LABELS, num_parts - 1)
    oracle.update(oracle_part_labels(gt, num_parts, size), gt)
    stripes = ParsingConfusion(num_parts, NUM_GT_LABELS, None)
    stripes.update(horizontal_stripes(gt.shape[0], *size, num_parts), gt)
    o = oracle.scores()
    return {"oracle_part_miou": o["part_miou"], "oracle_fg_iou": o["fg_iou"],
            "stripes_part_miou": stripes.scores()["part_miou"]}


def parse_size(text: str, full: tuple[int, int]) -> tuple[int, int]:
    """``"HxW"`` or ``"full"`` (the masks' own size)."""
    if text == "full":
        return full
    try:
        h, w = (int(t) for t in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not HxW (e.g. 16x8) or 'full'") from None
    if h < 1 or w < 1:
        raise ValueError(f"size {text!r} must be positive")
    return h, w


def load_masks(root: Path, max_images: int, seed: int = 0) -> torch.Tensor:
    """Ground-truth masks ``(N, H, W)`` of up to ``max_images`` train images of a synthetic world."""
    records = load_dataset("synthetic", root).train
    if len(records) > max_images:
        pick = np.random.default_rng(seed).choice(len(records), max_images, replace=False)
        records = [records[i] for i in sorted(pick)]
    return torch.stack([torch.as_tensor(np.asarray(load_mask(r.mask_path))) for r in records]).long()


def to_markdown(rows: list[dict], command: str) -> str:
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    lines = ["## Parsing ceiling by feature-map size", "", f"Command: `{command}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}. Target **train** masks; the score is "
             "the part mIoU of `scwm.parsing` (5 ground-truth body labels, one Hungarian assignment over the set, "
             "unmatched labels count 0, so l - 1 parts reach at most (l - 1)/5 at full resolution). Oracle = the "
             "ground truth grouped into l - 1 parts (`scwm.parsing.oracle`) and pooled to the map by majority "
             "vote: the ceiling of any pseudo or predicted mask of that size. Stripes = l horizontal stripes "
             "(the baseline's parts). 8x4 is our map at 128x64 input, 16x8 at 256x128, 24x8 the paper's at "
             "384x128.", "",
             "| target | l | images | " + " | ".join(f"{s}: oracle / stripes" for s in sizes) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in sizes) + " |"]
    for preset in dict.fromkeys(r["preset"] for r in rows):
        rr = {r["size"]: r for r in rows if r["preset"] == preset}
        first = next(iter(rr.values()))
        cells = " | ".join(f"{rr[s]['oracle_part_miou']:.3f} / {rr[s]['stripes_part_miou']:.3f}" for s in sizes)
        lines.append(f"| `{preset}` | {first['l']} | {first['images']} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESET_PARTS))
    p.add_argument("--parts", type=int, default=None, help="l for every preset (default: the harness's per target)")
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="HxW feature-map sizes, or 'full'")
    p.add_argument("--max-images", type=int, default=1200)
    p.add_argument("--data-dir", default="data/synthetic")
    p.add_argument("--out", default="experiments/results/analyses/parsing_ceiling.json")
    p.add_argument("--markdown", default="docs/bench/parsing_ceiling.md")
    args = p.parse_args(argv)
    rows = []
    for preset in args.presets:
        l_parts = args.parts or PRESET_PARTS.get(preset)
        if l_parts is None:
            p.error(f"--parts is needed for preset {preset!r} (known: {sorted(PRESET_PARTS)})")
        gt = load_masks(ensure_synthetic(Path(args.data_dir) / f"{preset}-seed0", preset, 0, progress=False),
                        args.max_images)
        for text in args.sizes:
            try:
                size = parse_size(text, tuple(gt.shape[1:]))
            except ValueError as err:
                p.error(f"--sizes: {err}")
            rows.append({"preset": preset, "l": l_parts, "size": text, "map": list(size), "images": len(gt),
                         **ceiling_scores(gt, l_parts, size)})
    command = ("python -m experiments.analyses.parsing_ceiling --presets " + " ".join(args.presets)
               + f" --max-images {args.max_images}" + (f" --parts {args.parts}" if args.parts else "")
               + ("" if list(args.sizes) == list(DEFAULT_SIZES) else " --sizes " + " ".join(args.sizes)))
    write_outputs({"command": command, "rows": rows}, args.out, args.markdown, to_markdown(rows, command))


if __name__ == "__main__":
    main()

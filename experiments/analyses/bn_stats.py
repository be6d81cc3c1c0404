"""BatchNorm neck statistics of a start model on a target world: does eval mode centre the target features?

For the global neck (BN over the mean-pooled feature) and the part necks (BN over the part-pooled features,
Eq. 6's pooling with the part head's probabilities), compare the running statistics stored in the model with
the statistics of the target's training images as the neck sees them. A neck whose running mean is far from
the target mean (in running standard deviations, ``|z|``) hands the first clustering stage uncentred features.

Run: ``python -m experiments.analyses.bn_stats --model zoo/plip-resnet18-128x64.pt --presets market msmt``
(writes experiments/results/analyses/bn_stats.json and docs/bench/bn_stats.md).
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from experiments.analyses import write_outputs
from scwm.data import load_dataset
from training.config import ZOO_SOURCE, preset_config
from training.datasets import ensure_synthetic
from training.features import eval_loader, neck_inputs_statistics
from training.model_init import build_model


def neck_stats(running_mean: torch.Tensor, running_var: torch.Tensor, mean: torch.Tensor,
               var: torch.Tensor) -> dict[str, float]:
    """Running statistics of a BN layer against the mean / variance (C,) of the features it would normalise."""
    z = (mean - running_mean) / running_var.clamp_min(1e-12).sqrt()
    return {"running_mean": float(running_mean.mean()), "running_var": float(running_var.mean()),
            "target_mean": float(mean.mean()), "target_var": float(var.mean()),
            "mean_abs_z": float(z.abs().mean()), "var_ratio": float((var / running_var.clamp_min(1e-12)).mean()),
            "corr_means": _corr(running_mean, mean)}


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation over channels; NaN when either is constant (e.g. a fresh running mean of zeros)."""
    if float(a.std()) == 0.0 or float(b.std()) == 0.0:
        return float("nan")
    return float(np.corrcoef(a.numpy(), b.numpy())[0, 1])


@torch.no_grad()
def measure(model: str, preset: str, images: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Neck statistics of ``model`` (any initial-weights file) on ``images`` training images of a preset."""
    root = f"data/synthetic/{preset}-seed0"
    cfg = preset_config("synthetic", {"model": {"weights": model}, "data": {"num_workers": 0, "root": root,
                                                                             "synthetic_preset": preset}})
    ensure_synthetic(root, preset, 0, False)
    torch.manual_seed(seed)  # the part head (never pretrained) is initialised at random: fix it
    net = build_model(cfg, torch.device("cpu")).eval()
    train = load_dataset("synthetic", root).train
    pick = np.random.RandomState(seed).choice(len(train), min(images, len(train)), replace=False)
    stats = neck_inputs_statistics(net, eval_loader([train[i] for i in pick], cfg), torch.device("cpu"),
                                   progress=False)
    return {"global_neck": neck_stats(net.global_bn.running_mean, net.global_bn.running_var, *stats["global"]),
            "part_necks": neck_stats(net.part_bn.running_mean, net.part_bn.running_var, *stats["parts"])}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=ZOO_SOURCE)
    p.add_argument("--presets", nargs="+", default=["market", "msmt"])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--out", default="experiments/results/analyses/bn_stats.json")
    p.add_argument("--markdown", default="docs/bench/bn_stats.md")
    args = p.parse_args(argv)
    if not Path(args.model).is_file():
        p.error(f"--model {args.model}: no such file")
    results = {preset: measure(args.model, preset, args.images) for preset in args.presets}
    keys = ("running_mean", "target_mean", "running_var", "target_var", "mean_abs_z", "var_ratio", "corr_means")
    lines = ["## BatchNorm neck statistics at the start", "",
             f"Command: `python -m experiments.analyses.bn_stats --model {args.model} --presets "
             f"{' '.join(args.presets)} --images {args.images}`  ",
             f"Machine: {platform.machine()}, torch {torch.__version__}. Averages over channels; `|z|`: distance of "
             "the target mean from the running mean in running standard deviations; var ratio: target variance / "
             "running variance; corr: correlation of the two mean vectors over channels.", "",
             "| target | neck | " + " | ".join(keys) + " |", "| --- | --- | " + " | ".join("---" for _ in keys) + " |"]
    for preset, necks in results.items():
        for neck, st in necks.items():
            lines.append(f"| {preset} | {neck} | " + " | ".join(f"{st[k]:.3f}" for k in keys) + " |")
    write_outputs(results, args.out, args.markdown, "\n".join(lines))
    return results


if __name__ == "__main__":
    main()

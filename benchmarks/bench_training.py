"""Training-step throughput, fp32 vs bf16 autocast (CPU) or AMP (CUDA), measured side by side.

Times full SCWM training steps (forward, Eq. 16 loss, backward, Adam step, memory update) on the
synthetic target images, alternating the precisions round by round so that machine noise hits both.

    python -m benchmarks.bench_training --backbone resnet18 --height 128 --width 64 --batch 32 --rounds 4
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from scwm.data import ReIDImageDataset, TrainTransform, load_dataset
from scwm.losses import LossTerms, total_loss
from scwm.memory import WeightedMemory
from scwm.models import SCWMNet
from training.datasets import ensure_synthetic
from training.runtime import autocast_context


def make_batch(root: Path, n: int, height: int, width: int, parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    records = load_dataset("synthetic", root).train[:n]
    ds = ReIDImageDataset(records, TrainTransform(height, width, seed=0))
    x = torch.stack([ds[i]["image"] for i in range(n)])
    masks = torch.softmax(torch.randn(n, parts, height // 16, width // 16), dim=1)
    return x, masks


def step_time(model: SCWMNet, memory: WeightedMemory, opt: torch.optim.Optimizer, x: torch.Tensor,
              masks: torch.Tensor, labels: torch.Tensor, precision: str, steps: int) -> float:
    dev = torch.device("cpu") if not torch.cuda.is_available() else torch.device("cuda")
    alpha = torch.rand(len(x), model.num_fg_parts, device=dev)
    tic = time.perf_counter()
    for _ in range(steps):
        with autocast_context(dev, precision):
            out = model(x, with_logits=True)
        loss, _ = total_loss(LossTerms(), global_feats=out.global_feat.float(), part_feats=out.part_feats.float(),
                             labels=labels, memory=memory, part_probs=out.part_probs.float(), target_masks=masks,
                             global_logits=out.global_logits.float(), part_logits=out.part_logits.float(),
                             alpha_parts=alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        memory.update(out.global_feat.detach().float(), out.part_feats.detach().float(), labels,
                      alpha_parts=alpha)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - tic) / steps


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--height", type=int, default=128)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--parts", type=int, default=4)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--data", default="data/synthetic/market-seed0")
    p.add_argument("--out", default="benchmarks/results/training_throughput.json")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    root = ensure_synthetic(args.data, "market", 0, progress=False)
    x, masks = make_batch(root, args.batch, args.height, args.width, args.parts)
    x, masks = x.to(dev), masks.to(dev)
    labels = torch.arange(args.batch, device=dev) // 4
    classes = int(labels.max()) + 1
    precisions = ["fp32", "bf16" if dev.type == "cpu" else "amp"]
    times: dict[str, list[float]] = {k: [] for k in precisions}
    torch.manual_seed(0)
    model = SCWMNet(args.backbone, num_parts=args.parts, num_classes=classes).to(dev).train()
    memory = WeightedMemory(torch.nn.functional.normalize(torch.randn(classes, model.feat_dim), dim=1),
                            torch.nn.functional.normalize(torch.randn(args.parts - 1, classes, model.feat_dim), dim=2)
                            ).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-5)
    for prec in precisions:  # warm-up
        step_time(model, memory, opt, x, masks, labels, prec, 1)
    for _ in range(args.rounds):
        for prec in precisions:
            times[prec].append(step_time(model, memory, opt, x, masks, labels, prec, args.steps))
    res = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
           "device": str(dev), "backbone": args.backbone, "input": [args.height, args.width], "batch": args.batch}
    for prec in precisions:
        best = min(times[prec])
        res[prec] = {"images_per_s": args.batch / best, "step_s": best, "all_step_s": times[prec]}
    res["speedup"] = res[precisions[1]]["images_per_s"] / res["fp32"]["images_per_s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()

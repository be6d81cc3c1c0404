"""Shared orchestration helpers: datasets, loaders, feature extraction, evaluation, logs, DDP."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from scwm.data import (
    EvalTransform,
    ImageRecord,
    ReIDDataset,
    ReIDImageDataset,
    collate_skip_none,
    load_dataset,
)
from scwm.evaluation import RankResult, evaluate_features
from scwm.models import SCWMNet, SCWMOutput

from .config import TrainConfig

log = logging.getLogger("scwm")


# --------------------------------------------------------------------------------------------- logging
def setup_logging(out_dir: Path | None = None, rank: int = 0) -> None:
    """Log INFO to stderr (rank 0 only) and to ``out_dir/train.log``."""
    level = logging.INFO if rank == 0 else logging.WARNING
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if out_dir is not None and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(out_dir / "train.log"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers,
                        force=True)


class MetricsLog:
    """Append-only JSONL file with one record per epoch (plot with :func:`plot_metrics`)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            if line.strip():
                out.append(json.loads(line))
        return out

    def truncate_after(self, epoch: int) -> None:
        """Drop records of epochs > ``epoch`` (after resuming from an earlier checkpoint)."""
        keep = [r for r in self.records() if r.get("epoch", -1) <= epoch]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in keep))

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def plot_metrics(jsonl: Path, png: Path) -> Path | None:
    """Plot every numeric per-epoch series of a metrics log into a grid of small charts."""
    records = MetricsLog(jsonl).records()
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in records for k, v in r.items()
                   if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)})
    cols = 4
    rows = max(1, (len(keys) + cols - 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        pts = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, png)
    return png


# ------------------------------------------------------------------------------------------------ data
def ensure_synthetic(root: str | Path, preset: str, seed: int, progress: bool = True) -> Path:
    """Generate the synthetic dataset at ``root`` unless a complete one (meta.json) is there."""
    root = Path(root)
    meta = root / "meta.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        if info.get("preset") != preset or info.get("seed") != seed:
            raise ValueError(f"{root} holds synthetic preset {info.get('preset')!r} seed {info.get('seed')}, "
                             f"not {preset!r} seed {seed}; choose another data root")
        _warn_if_stale(root, preset, info.get("config"))
        return root
    from scwm.data.synthetic import generate

    log.info("generating synthetic dataset %r (seed %d) into %s", preset, seed, root)
    generate(preset, root, seed=seed, progress=progress, overwrite=True)
    return root


def _warn_if_stale(root: Path, preset: str, recorded: dict | None) -> None:
    """Warn when a synthetic dataset on disk was generated with other settings than the current preset (an
    older version of the preset, or a generator knob such as ``--track-background``); it is used as is."""
    from scwm.data.synthetic import preset as synthetic_preset

    if recorded is None:
        return
    current = synthetic_preset(preset).echo()
    diff = sorted(k for k in set(current) | set(recorded) if current.get(k) != recorded.get(k))
    if diff:
        log.warning("%s was generated with settings that differ from the current %r preset (%s); it is used as "
                    "is. Delete it (or pass another data.root) to get the current world.", root, preset,
                    ", ".join(diff))


def load_train_dataset(cfg: TrainConfig) -> ReIDDataset:
    """The configured dataset, generating the synthetic one first when needed."""
    d = cfg.data
    if d.kind == "synthetic":
        ensure_synthetic(d.root, d.synthetic_preset, d.synthetic_seed, cfg.run.progress)
    kwargs = {"camera_regex": d.camera_regex} if d.kind == "folder" else {}
    return load_dataset(d.kind, d.root, **kwargs)


@dataclass
class DistEnv:
    """Process-group facts; a single process is rank 0 of world size 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_request: str) -> tuple[DistEnv, torch.device]:
    """Initialise torch.distributed from torchrun's environment (gloo on CPU, nccl on CUDA)."""
    from scwm.utils import pick_device

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv(), pick_device(device_request)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_request)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistEnv(rank, world, local), device


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.enabled:
        return obj
    holder = [obj if env.is_main else None]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_gather_cat(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate equally shaped tensors from all ranks along dim 0 (no gradient)."""
    if not env.enabled:
        return t
    out = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def eval_loader(records: Sequence[ImageRecord], cfg: TrainConfig, with_gt_masks: bool = False) -> DataLoader:
    ds = ReIDImageDataset(records, EvalTransform(cfg.data.height, cfg.data.width), use_gt_masks=with_gt_masks)
    return DataLoader(ds, batch_size=cfg.run.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                      collate_fn=collate_skip_none)


def cpu_has_native_bf16() -> bool:
    """True if this CPU computes bf16 in hardware (AVX512-BF16 or AMX); without it autocast emulates bf16.

    Uses torch's CPU capability probes; if they are missing (another torch build), falls back to the
    ``/proc/cpuinfo`` flags, and assumes native support where neither is available.
    """
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(callable(f) for f in probes):
        return any(bool(f()) for f in probes)  # type: ignore[misc]
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_warning(device: torch.device, precision: str) -> str | None:
    """Why ``precision`` will not do what it promises on ``device``, or None if it will."""
    if precision == "amp" and device.type != "cuda":
        return f"precision 'amp' needs CUDA; running in fp32 on {device}"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        return ("precision 'bf16' on a CPU without native bf16 (AVX512-BF16 / AMX): autocast is emulated and "
                "much slower than fp32 (16x on an AVX2 EPYC, docs/BENCHMARKS.md); use --run.precision fp32 "
                "on this machine")
    return None


def check_precision(device: torch.device, precision: str) -> None:
    """Log :func:`precision_warning`, if any (the run still goes ahead)."""
    warning = precision_warning(device, precision)
    if warning:
        log.warning("%s", warning)


def autocast_context(device: torch.device, precision: str) -> Any:
    """bf16 autocast on CPU, fp16 autocast on CUDA ("amp"), or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "amp" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return nullcontext()


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def extract(model: SCWMNet, loader: DataLoader, device: torch.device, precision: str = "fp32",
            on_batch: Callable[[SCWMOutput, dict[str, Any]], None] | None = None,
            desc: str = "extract", progress: bool = True) -> dict[str, torch.Tensor]:
    """Stream ``loader`` through the model in eval mode; keep only embeddings (CPU, float32).

    ``on_batch(output, batch)`` sees every batch's full output (feature maps included) so that callers
    can parse feature maps batch by batch without holding them all (Market scale: 20 GB of maps).
    Returns ``global`` (N, D), ``parts`` (N, P, D), ``index`` (N,) of the records that loaded.
    """
    g, p, idx = [], [], []
    with eval_mode(model):
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            if batch is None:
                continue
            with autocast_context(device, precision):
                out = model(batch["image"].to(device, non_blocking=True), with_logits=False)
            if on_batch is not None:
                on_batch(out, batch)
            g.append(out.global_feat.float().cpu())
            p.append(out.part_feats.float().cpu())
            idx.append(batch["index"])
    if not g:
        raise ValueError("no image could be loaded for feature extraction")
    return {"global": torch.cat(g), "parts": torch.cat(p), "index": torch.cat(idx)}


def evaluate(model: SCWMNet, dataset: ReIDDataset, cfg: TrainConfig, device: torch.device) -> RankResult:
    """Market-1501 protocol on the query/gallery split with the global embedding (as in the paper)."""
    q = extract(model, eval_loader(dataset.query, cfg), device, cfg.run.precision, desc="query",
                progress=cfg.run.progress)
    gal = extract(model, eval_loader(dataset.gallery, cfg), device, cfg.run.precision, desc="gallery",
                  progress=cfg.run.progress)

    def meta(records: Sequence[ImageRecord], index: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        ids = index.numpy()
        return (np.array([records[i].pid for i in ids]), np.array([records[i].camid for i in ids]))

    q_pids, q_cams = meta(dataset.query, q["index"])
    g_pids, g_cams = meta(dataset.gallery, gal["index"])
    return evaluate_features(q["global"], gal["global"], q_pids, g_pids, q_cams, g_cams, device=device,
                             max_rank=min(50, len(g_pids)))

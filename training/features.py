"""Feature extraction in eval mode, and the query/gallery evaluation built on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from scwm.data import EvalTransform, ImageRecord, ReIDDataset, ReIDImageDataset, collate_skip_none
from scwm.evaluation import RankResult, evaluate_features
from scwm.models import SCWMNet, SCWMOutput

from .config import TrainConfig
from .runtime import autocast_context


def eval_loader(records: Sequence[ImageRecord], cfg: TrainConfig, with_gt_masks: bool = False) -> DataLoader:
    """A deterministic loader of ``records`` with the evaluation transform (optionally their GT masks).

    It has a generator of its own: starting an iterator draws a seed, which must not come from the global
    RNG, or how often a run evaluates would change its training."""
    tf = EvalTransform(cfg.data.height, cfg.data.width, mean=cfg.data.mean, std=cfg.data.std)
    ds = ReIDImageDataset(records, tf, use_gt_masks=with_gt_masks)
    return DataLoader(ds, batch_size=cfg.run.eval_batch_size, shuffle=False, num_workers=cfg.data.num_workers,
                      collate_fn=collate_skip_none, generator=torch.Generator())


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its previous mode."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def neck_inputs_statistics(model: SCWMNet, loader: DataLoader, device: torch.device, precision: str = "fp32",
                           progress: bool = True) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and unbiased variance, over ``loader``'s images, of what the BN necks normalise: the mean-pooled
    global feature (``global``, (C,)) and the part-pooled features of Eq. 1 (``parts``, (P * C,)), in eval mode."""
    from scwm.models.scwm_net import part_pooling

    acc: dict[str, list[torch.Tensor]] = {"global": [], "parts": []}

    def on_batch(out: SCWMOutput, batch: dict[str, Any]) -> None:
        fmap = out.feature_map.float()
        acc["global"].append(fmap.mean(dim=(2, 3)).cpu())
        acc["parts"].append(part_pooling(fmap, out.part_probs.float()).flatten(1).cpu())

    extract(model, loader, device, precision, on_batch=on_batch, desc="neck statistics", progress=progress)
    return {k: (torch.cat(v).double().mean(0).float(), torch.cat(v).double().var(0).float()) for k, v in acc.items()}


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

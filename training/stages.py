"""The two stages of an SCWM epoch (Sec. 3.1): the clustering stage and the training stage.

Orchestration only: every algorithm called here is a pure function of ``scwm.*``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from scwm.clustering import cross_agreement, pseudo_labels
from scwm.data import IdentityBatchSampler, ReIDImageDataset, TrainTransform, collate_skip_none
from scwm.data.records import ImageRecord
from scwm.losses import total_loss
from scwm.memory import WeightedMemory
from scwm.models import SCWMNet
from scwm.parsing import (
    NUM_GT_LABELS,
    ParsingConfusion,
    binary_auc,
    mask_momentum,
    norm_cue_cells,
    oracle_part_labels,
    smooth_masks,
    spatial_cascaded_clustering,
    within_position_auc,
)

from .config import TrainConfig
from .features import eval_loader, extract
from .runtime import DistEnv, all_gather_cat, autocast_context

log = logging.getLogger("scwm")

_VARIANTS = {  # part_source -> (foreground_correction, space_correction)  (paper Table 2)
    "scc": (True, True),
    "cascaded": (False, False),
    "foreground": (True, False),
    "space": (False, True),
}


@dataclass
class ClusterTargets:
    """Everything the training stage needs from one clustering stage (kept on CPU)."""

    labels: np.ndarray  # (N,) pseudo identities, -1 = outlier
    alpha_parts: torch.Tensor  # (N, P) cross agreement, Eq. 7
    alpha_global: torch.Tensor  # (N,)
    memory: WeightedMemory
    soft_masks: torch.Tensor | None  # (N, l, h, w) smoothed pseudo masks, Eq. 3
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_clusters(self) -> int:
        return self.memory.num_clusters


def parse_batch(fmap: torch.Tensor, cfg: TrainConfig, gt_masks: torch.Tensor | None = None) -> torch.Tensor:
    """Pseudo part labels (B, h, w) of one batch of feature maps with the configured variant (Sec. 3.2),
    or, for ``part_source="gt"``, the oracle labels pooled from the ground-truth masks."""
    if cfg.cluster.part_source == "gt":
        if gt_masks is None:
            raise ValueError("cluster.part_source=gt needs ground-truth part masks (synthetic datasets only)")
        return oracle_part_labels(gt_masks.to(fmap.device), cfg.model.num_parts, tuple(fmap.shape[2:]))
    fg, space = _VARIANTS[cfg.cluster.part_source]
    return spatial_cascaded_clustering(fmap.float(), cfg.model.num_parts, eta=cfg.cluster.eta,
                                       foreground_correction=fg, space_correction=space,
                                       far_pairs=cfg.cluster.far_pairs)


def clustering_stage(model: SCWMNet, records: list[ImageRecord], cfg: TrainConfig, epoch: int,
                     device: torch.device, previous_masks: torch.Tensor | None,
                     gt_pids: np.ndarray | None = None) -> ClusterTargets:
    """Features, pseudo identities (Jaccard + DBSCAN), pseudo masks (SCC, streamed), difficulty (Eq. 7),
    and the memory initialised from cluster means. Runs on one process (rank 0 under DDP)."""
    tic = time.time()
    parsing = cfg.uses_parsing
    with_gt = all(r.mask_path for r in records)
    if cfg.cluster.part_source == "gt" and not with_gt:
        missing = next((r.path for r in records if not r.mask_path), "?")
        raise ValueError(f"cluster.part_source=gt needs a ground-truth mask for every training image; "
                         f"{missing} has none")
    n = len(records)
    conf_pseudo = conf_pred = None
    if parsing:
        if with_gt:
            conf_pseudo = ParsingConfusion(cfg.model.num_parts, NUM_GT_LABELS, cfg.model.num_parts - 1)
            conf_pred = ParsingConfusion(cfg.model.num_parts, NUM_GT_LABELS, cfg.model.num_parts - 1)
    chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
    norm_cells: list[tuple[torch.Tensor, torch.Tensor]] = []  # (max-normalized norm, body cell)

    def on_batch(out: Any, batch: dict[str, Any]) -> None:
        if "mask" in batch:  # diagnostic of step 1's premise: does the feature norm mark the body?
            nrm, body = norm_cue_cells(out.feature_map, batch["mask"])  # (B, h, w) each
            norm_cells.append((nrm.cpu(), body.cpu()))
        if not parsing:
            return
        lab = parse_batch(out.feature_map, cfg, batch.get("mask"))
        chunks.append((batch["index"], lab.to(torch.uint8).cpu()))
        if conf_pseudo is not None and conf_pred is not None and "mask" in batch:
            conf_pseudo.update(lab.cpu(), batch["mask"])
            conf_pred.update(out.part_probs.argmax(1).cpu(), batch["mask"])

    loader = eval_loader(records, cfg, with_gt_masks=with_gt)
    feats = extract(model, loader, device, cfg.run.precision, on_batch=on_batch,
                    desc=f"cluster {epoch + 1}", progress=cfg.run.progress)
    if len(feats["index"]) != n:
        raise ValueError(f"{n - len(feats['index'])} training images could not be loaded; "
                         "remove them from the training set (see the warnings above)")
    order = torch.argsort(feats["index"])
    g, p = feats["global"][order], feats["parts"][order]
    t_feat = time.time() - tic

    tic = time.time()
    if cfg.cluster.supervised:
        if gt_pids is None:
            raise ValueError("cluster.supervised needs ground-truth identities, which this dataset lacks")
        labels = gt_pids.astype(np.int64)
    else:
        labels = pseudo_labels(g, cfg.cluster.eps, cfg.cluster.min_samples,
                               min(cfg.cluster.k1, n - 1), min(cfg.cluster.k2, n - 1), device=device)
    t_dbscan = time.time() - tic
    k = min(cfg.cluster.knn_k, n - 1)
    alpha_p, alpha_g = cross_agreement(g, p, k=k, device=device)  # the k-NN searches run on the GPU if any
    num_clusters = int(labels.max()) + 1 if labels.size else 0
    memory = build_memory(g, p, torch.from_numpy(labels), num_clusters, cfg)

    soft = None
    if parsing and chunks:
        idx = torch.cat([c[0] for c in chunks])
        lab = torch.cat([c[1] for c in chunks])[torch.argsort(idx)].long()
        gamma = mask_momentum(epoch, cfg.cluster.mask_gamma, cfg.cluster.mask_gamma_until)
        prev = previous_masks if previous_masks is not None and previous_masks.shape[2:] == lab.shape[1:] else None
        soft = smooth_masks(prev, lab, gamma if prev is not None else 0.0, num_parts=cfg.model.num_parts)
    clustered = labels >= 0
    stats: dict[str, Any] = {
        "num_clusters": num_clusters,
        "num_outliers": int((~clustered).sum()),
        "clustered_fraction": float(clustered.mean()) if n else 0.0,
        "alpha_global_mean": float(alpha_g.mean()),
        "time_features_s": t_feat,
        "time_dbscan_s": t_dbscan,
    }
    if gt_pids is not None and not cfg.cluster.supervised and num_clusters:
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        stats["cluster_nmi"] = float(normalized_mutual_info_score(gt_pids[clustered], labels[clustered]))
        stats["cluster_ari"] = float(adjusted_rand_score(gt_pids[clustered], labels[clustered]))
    if norm_cells:
        nrm_all, body_all = torch.cat([c[0] for c in norm_cells]), torch.cat([c[1] for c in norm_cells])
        stats["fg_norm_auc"] = binary_auc(nrm_all, body_all)
        # the same cue with the fixed spatial profile removed: body vs background at each grid position
        auc_within, n_positions = within_position_auc(nrm_all, body_all)
        if n_positions:
            stats["fg_norm_auc_within"] = auc_within
    if conf_pseudo is not None and conf_pred is not None:
        for name, conf in (("pseudo_mask", conf_pseudo), ("pred_mask", conf_pred)):
            sc = conf.scores()
            stats[f"{name}_fg_iou"], stats[f"{name}_miou"] = sc["fg_iou"], sc["part_miou"]
    return ClusterTargets(labels, alpha_p.cpu(), alpha_g.cpu(), memory, soft, stats)


def build_memory(global_feats: torch.Tensor, part_feats: torch.Tensor, labels: torch.Tensor, num_clusters: int,
                 cfg: TrainConfig) -> WeightedMemory:
    """The epoch's memory (Sec. 3.3) from the cluster means, with the ``loss`` section's settings (Eq. 8-9)."""
    return WeightedMemory.from_features(
        global_feats, part_feats, labels, num_clusters=num_clusters, tau=cfg.loss.temperature,
        momentum=cfg.loss.memory_momentum, update_strategy=cfg.loss.memory_update,
        weight_normalization=cfg.loss.memory_normalization)


def train_epoch(model: torch.nn.Module, net: SCWMNet, records: list[ImageRecord], targets: ClusterTargets,
                cfg: TrainConfig, epoch: int, optimizers: list[torch.optim.Optimizer], device: torch.device,
                env: DistEnv, scaler: torch.amp.GradScaler | None = None,
                schedule: Callable[[int], None] | None = None,
                after_step: Callable[[], None] | None = None) -> dict[str, float]:
    """One training stage over the pseudo-labelled set (outliers excluded); returns mean loss terms.

    ``model`` may be the DDP wrapper of ``net``. The memory is updated after every step with the
    (all-gathered) batch features, outside autograd (Eq. 9). ``schedule(step)``, when given, sets the
    learning rates before each step; ``after_step()`` runs after each optimizer step (the EMA teacher).
    """
    switches = cfg.loss.terms(parts_learned=cfg.uses_parsing)
    memory = targets.memory.to(device)
    alpha_p = targets.alpha_parts.to(device)
    alpha_g = targets.alpha_global.to(device)
    tf = TrainTransform(cfg.data.height, cfg.data.width, mean=cfg.data.mean, std=cfg.data.std)
    ds = ReIDImageDataset(records, tf, labels=targets.labels,
                          soft_masks=targets.soft_masks if switches.parsing else None)
    camids = np.array([r.camid for r in records])
    sampler = IdentityBatchSampler(targets.labels, camids, cfg.optim.batch_size // env.world_size,
                                   cfg.optim.num_instances, cfg.optim.iters, seed=cfg.run.seed,
                                   rank=env.rank, world_size=env.world_size)
    sampler.set_epoch(epoch)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        collate_fn=collate_skip_none, pin_memory=device.type == "cuda")
    smoothing_eps = 0.1 if epoch < cfg.loss.aals_start_epoch else None
    model.train()
    sums: dict[str, torch.Tensor] = {}
    steps, seen, tic = 0, 0, time.time()
    bar = tqdm(loader, desc=f"train {epoch + 1}/{cfg.optim.epochs}", disable=not (cfg.run.progress and env.is_main))
    for batch in bar:
        if batch is None:
            continue
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device, non_blocking=True)
        idx = batch["index"].to(device)
        mask = batch["mask"].to(device, non_blocking=True) if "mask" in batch else None
        with autocast_context(device, cfg.run.precision):
            out = model(x, with_logits=True)
        loss, terms = total_loss(
            switches, global_feats=out.global_feat.float(), part_feats=out.part_feats.float(), labels=y,
            memory=memory, part_probs=out.part_probs.float(), target_masks=mask,
            global_logits=out.global_logits.float(), part_logits=out.part_logits.float(),
            alpha_global=alpha_g[idx], alpha_parts=alpha_p[idx], smoothing_only_epsilon=smoothing_eps,
            embeddings=out.global_embedding.float())
        if schedule is not None:
            schedule(steps)  # the learning rate of this step (warm-up, training/schedule.py)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            for opt in optimizers:
                scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            for opt in optimizers:
                opt.step()
        if after_step is not None:
            after_step()
        with torch.no_grad():
            memory.update(all_gather_cat(out.global_feat.detach().float(), env),
                          all_gather_cat(out.part_feats.detach().float(), env),
                          all_gather_cat(y, env), all_gather_cat(alpha_g[idx], env),
                          all_gather_cat(alpha_p[idx], env))
        terms["total"] = loss.detach()
        for k, v in terms.items():
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v.float()
        steps += 1
        seen += len(y)
        if steps % 10 == 0 or steps == len(sampler):
            total = float(terms["total"])  # one host sync every 10 steps, for the progress bar only
            if not np.isfinite(total):
                raise FloatingPointError(f"loss became {total} at epoch {epoch + 1}, step {steps}: "
                                         f"{ {k: float(v) for k, v in terms.items()} }")
            bar.set_postfix(loss=f"{total:.3f}")
    means = {f"loss_{k}": float(v) / max(steps, 1) for k, v in sums.items()}
    if not all(np.isfinite(v) for v in means.values()):
        raise FloatingPointError(f"non-finite losses at epoch {epoch + 1}: {means}")
    elapsed = time.time() - tic
    means["train_images_per_s"] = seen * env.world_size / max(elapsed, 1e-9)
    means["time_train_s"] = elapsed
    return means

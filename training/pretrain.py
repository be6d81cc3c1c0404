"""Supervised pretraining on the synthetic source domain: ``python -m training.pretrain``.

The paper starts SCWM from a ResNet-50 pretrained with PLIP on SYNTH-PEDES (synthetic pedestrians with labels
and descriptions). Our analogue trains the backbone on a synthetic **source** world (identities and camera styles
disjoint from the targets) with ID cross-entropy (label smoothing) + batch-hard triplet on the global
embedding, plus, in the ``synthetic`` preset's recipe (:data:`training.config.PLIP_PRETRAIN`: the 1,500-identity
``source-large`` world), PLIP's fine-grained tasks: attribute prediction and attribute-guided colourisation
(:mod:`training.pretrain_tasks`; their heads are discarded). It saves a model-zoo file (:mod:`training.zoo`:
backbone + global neck in float16, the recipe, the held-out source mAP) that the unsupervised run starts from
(``model.weights = "pretrain"``; the ``synthetic`` preset starts from the committed zoo file that this re-creates,
docs/MODEL_ZOO.md). It accepts the same flags as ``training.run`` (only ``data.*``, ``model.*``, ``pretrain.*``
and ``run.*`` matter here). Resumable: a per-epoch state file next to the checkpoint is picked up.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from scwm.data import IdentityBatchSampler, ReIDImageDataset, TrainTransform, collate_skip_none, relabel_pids
from scwm.data.records import ReIDDataset
from scwm.losses.triplet import batch_hard_distances
from scwm.models import ModelSpec, SCWMNet
from scwm.utils import atomic_torch_save, exclusive_lock, seed_everything

from .cli import config_from_args
from .config import TrainConfig, off_legacy
from .datasets import ensure_synthetic
from .features import evaluate
from .logs import MetricsLog, setup_logging
from .model_init import model_spec, pretrained_path
from .pretrain_tasks import PretrainTasks, evaluates_at, heldout_attribute_accuracy, source_attribute_labels
from .runtime import autocast_context, check_precision, init_distributed
from .zoo import read_zoo, save_zoo, zoo_state

log = logging.getLogger("scwm")


def batch_hard_triplet_loss(feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) on Euclidean distances of ``feats`` (B, D)."""
    hardest_pos, hardest_neg = batch_hard_distances(torch.cdist(feats, feats), labels)
    valid = torch.isfinite(hardest_neg)
    loss = F.relu(hardest_pos - hardest_neg + margin)
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def run_pretraining(cfg: TrainConfig, device: torch.device | None = None) -> Path:
    """Train on the source domain unless the checkpoint exists; returns the checkpoint path.

    An exclusive file lock next to the checkpoint makes concurrent callers (DDP ranks, parallel
    experiments) wait for one pretraining instead of all writing the same file.
    """
    out = pretrained_path(cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out.with_suffix(".lock")):
        return _pretrain_locked(cfg, out, device)


_TASK_FIELDS = {"attributes": ("attributes", "attribute_weight"),
                "colorization": ("colorization", "colorization_weight", "colorization_fraction")}
_NOT_IN_RECIPE = {"checkpoint", "eval_every", *(n for names in _TASK_FIELDS.values() for n in names)}


def pretrain_recipe(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    """The config fields that source pretraining reads (a zoo file's ``recipe``): equal recipes on the same
    kind of CPU (and thread count) give the same weights, hence the same zoo file."""
    data = {"height": cfg.data.height, "width": cfg.data.width, "num_workers": cfg.data.num_workers}
    # pixel statistics only when not the defaults, which earlier zoo files were made with (and do not record)
    data.update(off_legacy(cfg.data, ("mean", "std")))
    pc = cfg.pretrain
    pre = {k: v for k, v in pc.model_dump().items() if k not in _NOT_IN_RECIPE}
    for flag, names in _TASK_FIELDS.items():  # a task and its weight only when on: earlier files stay current
        if getattr(pc, flag):
            pre.update({n: getattr(pc, n) for n in names})
    return {"pretrain": pre,
            "model": {"backbone": cfg.model.backbone, "num_parts": cfg.model.num_parts},
            "data": data, "run": {"precision": cfg.run.precision, "device": device.type}}


_RESULT_FREE = {("data", "num_workers"), ("run", "precision"), ("run", "device")}
"""Recipe fields that may differ between a cached file and the current config (with a warning): they change
the bytes, not what the file is."""


def check_cached(out: Path, recipe: dict[str, Any]) -> None:
    """Accept a cached pretraining file only if it is a zoo file made with this recipe; ValueError otherwise."""
    try:
        cached = read_zoo(out)["recipe"]
    except ValueError as exc:
        raise ValueError(f"{exc}; it is not the output of this version's source pretraining: delete it to "
                         "pretrain again") from exc
    differ = sorted(f"{sec}.{k}" for sec in recipe.keys() | cached.keys()
                    for k in recipe.get(sec, {}).keys() | cached.get(sec, {}).keys()
                    if recipe.get(sec, {}).get(k) != cached.get(sec, {}).get(k))
    hard = [d for d in differ if tuple(d.split(".", 1)) not in _RESULT_FREE]
    if hard:
        raise ValueError(f"{out} was pretrained with other settings ({', '.join(hard)}); delete it, or point "
                         "--pretrain.checkpoint elsewhere")
    if differ:
        log.warning("%s was pretrained with other %s; using it", out, ", ".join(differ))


def heldout_figures(state: dict[str, torch.Tensor], spec: ModelSpec, source: ReIDDataset, cfg: TrainConfig,
                    device: torch.device, tasks: PretrainTasks | None = None,
                    heldout_attrs: np.ndarray | None = None) -> dict[str, float]:
    """Held-out source-identity mAP / Rank-1 (the source query/gallery split, whose identities pretraining
    never sees) of the weights as the zoo file stores them (float16); with an attribute head in ``tasks``, also
    its per-group accuracy on those images (``heldout_attrs``: their attribute classes)."""
    net = SCWMNet(spec.backbone, num_parts=spec.num_parts).to(device)
    net.load_state_dict(zoo_state(state), strict=False)
    return _figures(net.eval(), source, cfg, device, tasks, heldout_attrs)


def _figures(model: SCWMNet, source: ReIDDataset, cfg: TrainConfig, device: torch.device,
             tasks: PretrainTasks | None, heldout_attrs: np.ndarray | None) -> dict[str, float]:
    """Held-out mAP / Rank-1 of ``model`` (evaluated in eval mode) and, with an attribute head, its accuracy."""
    r = evaluate(model, source, cfg, device)
    out = {"heldout_mAP": r.mAP, "heldout_rank1": r.rank1}
    if tasks is not None and tasks.attr_head is not None and heldout_attrs is not None:
        out.update(heldout_attribute_accuracy(model, tasks.attr_head, source.query + source.gallery, heldout_attrs,
                                              cfg, device))
    return out


def _pretrain_locked(cfg: TrainConfig, out: Path, device: torch.device | None) -> Path:
    device = device or init_distributed(cfg.run.device)[1]
    recipe = pretrain_recipe(cfg, device)
    if out.is_file():
        check_cached(out, recipe)  # also fails loudly on a corrupt cache rather than later
        log.info("using cached source-pretrained backbone %s", out)
        return out
    pc = cfg.pretrain
    check_precision(device, cfg.run.precision)
    seed_everything(pc.seed)
    from scwm.data import load_dataset

    ensure_synthetic(pc.root, pc.preset, pc.seed, cfg.run.progress)
    source = load_dataset("synthetic", pc.root)
    relabeled, _ = relabel_pids(source.train)
    labels = np.array([r.pid for r in relabeled], dtype=np.int64)
    num_classes = int(labels.max()) + 1
    spec = model_spec(cfg)
    spec.part_mode = "learned"
    model = SCWMNet(cfg.model.backbone, num_parts=cfg.model.num_parts, num_classes=num_classes).to(device)
    tasks = PretrainTasks(pc, model.feat_dim).to(device)  # no parameters (nor random draws) with the tasks off
    train_attrs, heldout_attrs = None, None
    if tasks.enabled:
        train_attrs = torch.from_numpy(source_attribute_labels(source.root, source.train, "training"))
        heldout_attrs = source_attribute_labels(source.root, source.query + source.gallery, "held-out")
    params = [p for p in model.parameters() if p.requires_grad] + list(tasks.parameters())
    opt = torch.optim.Adam(params, lr=pc.lr, weight_decay=pc.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=pc.epochs)
    state_path = out.with_suffix(".state.pt")
    metrics = MetricsLog(out.with_suffix(".metrics.jsonl"))
    start = 0
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if set(state.get("tasks", {})) != set(tasks.state_dict()):
            raise ValueError(f"{state_path} was saved with other pretraining tasks than this run's "
                             "(pretrain.attributes, pretrain.colorization): delete it to start again")
        model.load_state_dict(state["model"])
        tasks.load_state_dict(state.get("tasks", {}))
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["epoch"]) + 1
        metrics.truncate_after(start - 1)
        log.info("resuming source pretraining at epoch %d from %s", start + 1, state_path)
    camids = [r.camid for r in source.train]
    tf = TrainTransform(cfg.data.height, cfg.data.width, mean=cfg.data.mean, std=cfg.data.std)
    ds = ReIDImageDataset(source.train, tf, labels=labels)
    log.info("source pretraining: %d images, %d identities, %d epochs x %d iterations -> %s",
             len(ds), num_classes, pc.epochs, pc.iters, out)
    for epoch in range(start, pc.epochs):
        sampler = IdentityBatchSampler(labels, camids, pc.batch_size, pc.num_instances, pc.iters, seed=pc.seed)
        sampler.set_epoch(epoch)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                            collate_fn=collate_skip_none)
        model.train()
        tasks.train()
        tic, seen, sums = time.time(), 0, {"ce": 0.0, "triplet": 0.0, "acc": 0.0}
        bar = tqdm(loader, desc=f"pretrain {epoch + 1}/{pc.epochs}", disable=not cfg.run.progress)
        for batch in bar:
            if batch is None:
                continue
            x, y = batch["image"].to(device), batch["label"].to(device)
            with autocast_context(device, cfg.run.precision):
                o = model(x, with_logits=True)
            logits = o.global_logits.float()
            ce = F.cross_entropy(logits, y, label_smoothing=pc.label_smoothing)
            tri = batch_hard_triplet_loss(o.global_feat.float(), y, pc.triplet_margin)
            loss = ce + tri
            if tasks.enabled:
                aux, task_logs = tasks(model, x, o, train_attrs[batch["index"]].to(device), cfg.data.mean,
                                       cfg.data.std, cfg.run.precision)
                loss = loss + aux
                for k, v in task_logs.items():
                    sums[k] = sums.get(k, 0.0) + v
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite pretraining loss at epoch {epoch + 1}; "
                                         f"last good state: {state_path}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(y)
            sums["ce"] += float(ce.detach())
            sums["triplet"] += float(tri.detach())
            sums["acc"] += float((logits.argmax(1) == y).float().mean())
            bar.set_postfix(ce=f"{float(ce.detach()):.3f}", tri=f"{float(tri.detach()):.3f}")
        sched.step()
        n = max(1, len(loader))
        rec = {"epoch": epoch, **{k: v / n for k, v in sums.items()},
               "images_per_s": seen / max(time.time() - tic, 1e-9), "lr": opt.param_groups[0]["lr"]}
        if evaluates_at(epoch, pc) and source.query and source.gallery:  # the current float32 weights
            rec.update(_figures(model, source, cfg, device, tasks, heldout_attrs))
        metrics.append(rec)
        log.info("pretrain epoch %d: %s", epoch + 1,
                 ", ".join(f"{k}={v:.4g}" for k, v in rec.items() if k != "epoch"))
        atomic_torch_save(state_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                       "scheduler": sched.state_dict(), "epoch": epoch,
                                       **({"tasks": tasks.state_dict()} if tasks.enabled else {})})
    if not math.isfinite(sums["ce"]):
        raise FloatingPointError("pretraining diverged")
    state = model.state_dict()
    figures = (heldout_figures(state, spec, source, cfg, device, tasks, heldout_attrs)
               if source.query and source.gallery else {})
    save_zoo(out, state, spec.to_dict(), recipe, figures)
    state_path.unlink(missing_ok=True)
    log.info("saved source-pretrained backbone %s (%s)", out,
             ", ".join(f"{k}={v:.4f}" for k, v in figures.items()) or "no held-out split")
    return out


def main(argv: list[str] | None = None) -> Path:
    cfg, ns = config_from_args(argv, prog="python -m training.pretrain")
    if ns.print_config:
        print(cfg.pretrain.model_dump())
        return pretrained_path(cfg)
    setup_logging()
    return run_pretraining(cfg)


if __name__ == "__main__":
    main()

"""Learning-rate schedule of the training stage.

- The paper's step decay (Sec. 4.2): ``lr / 10`` every ``optim.step_size`` epochs (:func:`lr_at`).
- An optional linear warm-up over the first ``optim.warmup_iters`` iterations of the run, from 1% of the rate
  (:func:`warmup_factor`; ISP's warm-up, per iteration here because our runs have few epochs).
- An optional lower rate for the pretrained trunk than for the new heads (part head, BN necks, classifiers):
  ``optim.backbone_lr_mult`` (:func:`param_groups`).

Each optimizer param group carries ``lr_mult``; :func:`set_lr` sets ``lr = base * lr_mult * factor``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from .config import TrainConfig

WARMUP_START = 0.01
"""Warm-up starts at this fraction of the rate (ISP: 0.01x)."""


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Step schedule of Sec. 4.2: lr / 10 every ``optim.step_size`` epochs."""
    return cfg.optim.lr * (0.1 ** (epoch // cfg.optim.step_size))


def warmup_factor(step: int, warmup_iters: int, start: float = WARMUP_START) -> float:
    """Linear warm-up factor at training iteration ``step`` (0-based, counted over the whole run):
    ``start`` at step 0, rising linearly to 1 at ``warmup_iters``, 1 afterwards (and always when
    ``warmup_iters`` is 0)."""
    if warmup_iters <= 0 or step >= warmup_iters:
        return 1.0
    return start + (1.0 - start) * max(step, 0) / warmup_iters


def param_groups(net: torch.nn.Module, backbone: torch.nn.Module, backbone_lr_mult: float) -> list[dict[str, Any]]:
    """Adam param groups: one group of every trainable parameter (in ``net.parameters()`` order) when
    ``backbone_lr_mult`` is 1, else the trunk (``backbone``) at ``backbone_lr_mult`` and the rest at 1."""
    params = [p for p in net.parameters() if p.requires_grad]
    if backbone_lr_mult == 1.0:
        return [{"params": params, "lr_mult": 1.0}]
    trunk_ids = {id(p) for p in backbone.parameters()}
    trunk = [p for p in params if id(p) in trunk_ids]
    heads = [p for p in params if id(p) not in trunk_ids]
    return [{"params": trunk, "lr_mult": float(backbone_lr_mult)}, {"params": heads, "lr_mult": 1.0}]


def set_lr(optimizers: Iterable[torch.optim.Optimizer], base_lr: float, factor: float = 1.0) -> None:
    """Set every param group's rate to ``base_lr * lr_mult * factor`` (``lr_mult`` defaults to 1)."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = base_lr * group.get("lr_mult", 1.0) * factor


def apply_lr(optimizers: Iterable[torch.optim.Optimizer], cfg: TrainConfig, epoch: int, step: int = 0) -> None:
    """Set the rates of training iteration ``step`` of ``epoch``: step decay x warm-up x each group's ``lr_mult``."""
    set_lr(optimizers, lr_at(cfg, epoch), warmup_factor(epoch * cfg.optim.iters + step, cfg.optim.warmup_iters))

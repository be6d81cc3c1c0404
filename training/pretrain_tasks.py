"""PLIP-analogue tasks of source pretraining (``pretrain.attributes``, ``pretrain.colorization``).

PLIP ("PLIP: language-image pre-training for person representation learning", Sec. 3) makes its encoder
part-aware with image-guided attribute prediction and text-guided colourisation of a greyscale image. Here the
"text" is the attribute vector of the synthetic identity spec (:mod:`scwm.data.synthetic.attributes`):

- attributes: one classifier per attribute group on GAP of the feature map of the colour crop;
- colourisation: the backbone sees the greyscale crop (L* of Lab) in a second pass whose BatchNorm layers do
  not update their running statistics, and a small decoder conditioned on the one-hot attribute vector (FiLM)
  predicts a*b* at 4x the feature-map resolution (L1 loss).

The heads live in :class:`PretrainTasks`, outside the network, so the zoo file (backbone + global neck) has
the same keys with or without them. Source labels only: targets are never read here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from scwm.data.records import ImageRecord
from scwm.data.synthetic.attributes import ATTRIBUTE_GROUPS, GROUP_SIZES, attribute_labels, read_attribute_table
from scwm.losses.pretrain import (
    attribute_accuracy,
    attribute_loss,
    colorization_loss,
    colorization_target,
    denormalize,
    greyscale_like_lab,
    normalize,
)
from scwm.models import SCWMNet, SCWMOutput
from scwm.models.pretrain_heads import AttributeHead, ColorizationDecoder, frozen_bn_statistics, one_hot_attributes

from .config import PretrainConfig, TrainConfig
from .features import eval_loader, eval_mode, extract
from .runtime import autocast_context


def source_attribute_labels(root: str | Path, records: Sequence[ImageRecord], what: str) -> np.ndarray:
    """(N, G) attribute class indices of source ``records`` (original pids); -1 rows for pid-0 distractors.
    ValueError naming the tree when an identity of ``what`` has no labels."""
    table = read_attribute_table(root)
    labels = attribute_labels([r.pid for r in records], table)
    missing = sorted({r.pid for r, row in zip(records, labels, strict=True) if r.pid > 0 and row[0] < 0})
    if missing:
        raise ValueError(f"{root}: no attribute labels for {len(missing)} {what} identities (e.g. pid {missing[0]})")
    return labels


class PretrainTasks(nn.Module):
    """The enabled auxiliary heads and their weighted losses on one batch."""

    def __init__(self, pc: PretrainConfig, feat_dim: int) -> None:
        super().__init__()
        self.attribute_weight, self.colorization_weight = pc.attribute_weight, pc.colorization_weight
        self.colorization_fraction = pc.colorization_fraction
        self.attr_head = AttributeHead(feat_dim, GROUP_SIZES) if pc.attributes else None
        self.decoder = ColorizationDecoder(feat_dim, sum(GROUP_SIZES)) if pc.colorization else None

    @property
    def enabled(self) -> bool:
        return self.attr_head is not None or self.decoder is not None

    def forward(self, model: SCWMNet, x: torch.Tensor, out: SCWMOutput, attrs: torch.Tensor,
                mean: Sequence[float], std: Sequence[float], precision: str = "fp32"
                ) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted sum of the enabled task losses, and per-task figures (losses, train attribute accuracy).

        ``x`` are the normalised colour crops the model saw (``out``), ``attrs`` their (B, G) attribute classes;
        the colourisation pass takes the first ``ceil(colorization_fraction * B)`` of them."""
        total = x.new_zeros((), dtype=torch.float32)
        logs: dict[str, float] = {}
        if self.attr_head is not None:
            logits = self.attr_head(out.feature_map.float().mean(dim=(2, 3)))
            loss = attribute_loss(logits, attrs)
            total = total + self.attribute_weight * loss
            logs["attr"] = float(loss.detach())
            logs["attr_acc"] = float(attribute_accuracy(logits, attrs).nanmean())
        if self.decoder is not None:
            k = math.ceil(self.colorization_fraction * x.shape[0])
            rgb = denormalize(x[:k].float(), mean, std)
            grey = normalize(greyscale_like_lab(rgb), mean, std)
            with frozen_bn_statistics(model), autocast_context(x.device, precision):
                pred = self.decoder(model.backbone(grey), one_hot_attributes(attrs[:k], GROUP_SIZES))
            loss = colorization_loss(pred, colorization_target(rgb, tuple(pred.shape[-2:])))
            total = total + self.colorization_weight * loss
            logs["color"] = float(loss.detach())
        return total, logs


@torch.no_grad()
def heldout_attribute_accuracy(model: SCWMNet, head: AttributeHead, records: Sequence[ImageRecord],
                               labels: np.ndarray, cfg: TrainConfig, device: torch.device) -> dict[str, float]:
    """Per-group attribute accuracy of ``head`` on ``records`` (held-out source identities; rows of ``labels``
    at -1 are left out), as ``heldout_attr_<group>``, and their mean ``heldout_attr_mean``."""
    chunks: list[list[torch.Tensor]] = []

    def on_batch(o: SCWMOutput, batch: dict[str, Any]) -> None:
        chunks.append([lg.float().cpu() for lg in head(o.feature_map.float().mean(dim=(2, 3)))])

    with eval_mode(head):
        got = extract(model, eval_loader(records, cfg), device, cfg.run.precision, on_batch=on_batch,
                      desc="attributes", progress=cfg.run.progress)
    logits = [torch.cat([c[g] for c in chunks]) for g in range(len(GROUP_SIZES))]
    acc = attribute_accuracy(logits, torch.from_numpy(labels[got["index"].numpy()]))
    out = {f"heldout_attr_{g}": float(a) for g, a in zip(ATTRIBUTE_GROUPS, acc, strict=True)}
    out["heldout_attr_mean"] = float(acc.nanmean())
    return out


def evaluates_at(epoch: int, pc: PretrainConfig) -> bool:
    """Whether the metrics record of 0-based ``epoch`` carries the held-out figures (``pretrain.eval_every``)."""
    return pc.eval_every > 0 and ((epoch + 1) % pc.eval_every == 0 or epoch + 1 == pc.epochs)

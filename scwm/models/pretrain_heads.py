"""Heads of PLIP-style source pretraining, discarded after it (only the backbone goes into the model zoo).

- :class:`AttributeHead`: one linear classifier per attribute group on the pooled global feature (PLIP's
  image-guided attribute prediction).
- :class:`ColorizationDecoder`: a small decoder on the backbone's feature map of a greyscale crop, conditioned
  on the one-hot attribute vector by FiLM (Perez et al., "FiLM: Visual Reasoning with a General Conditioning
  Layer"), that predicts a*b* at 4x the feature-map resolution (PLIP's text-guided colourisation).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class AttributeHead(nn.Module):
    """BatchNorm + one bias-carrying linear layer per group, on GAP of the feature map (B, C)."""

    def __init__(self, in_dim: int, group_sizes: Sequence[int]) -> None:
        super().__init__()
        if not group_sizes or min(group_sizes) < 2:
            raise ValueError(f"every attribute group needs >= 2 classes, got {list(group_sizes)}")
        self.group_sizes = tuple(int(k) for k in group_sizes)
        self.bn = nn.BatchNorm1d(in_dim)
        self.fc = nn.Linear(in_dim, sum(self.group_sizes))
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: torch.Tensor) -> list[torch.Tensor]:
        """Logits per group, [(B, K_g)]."""
        return list(self.fc(self.bn(pooled)).split(self.group_sizes, dim=1))


def one_hot_attributes(targets: torch.Tensor, group_sizes: Sequence[int]) -> torch.Tensor:
    """Concatenated one-hot groups (B, sum K_g) of class indices (B, G); an unknown class (-1) is all zeros."""
    if targets.dim() != 2 or targets.shape[1] != len(group_sizes):
        raise ValueError(f"targets must be (B, {len(group_sizes)}), got {tuple(targets.shape)}")
    parts = [F.one_hot(targets[:, g].clamp(min=0), k).float() * (targets[:, g:g + 1] >= 0).float()
             for g, k in enumerate(group_sizes)]
    return torch.cat(parts, dim=1)


class ColorizationDecoder(nn.Module):
    """Feature map (B, C, h, w) + condition (B, A) -> a*b* / AB_SCALE (B, 2, 4h, 4w) in (-1, 1)."""

    def __init__(self, in_channels: int, cond_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, hidden, kernel_size=1)
        self.film = nn.Linear(cond_dim, 2 * hidden)
        nn.init.zeros_(self.film.weight)  # starts as the identity modulation
        nn.init.zeros_(self.film.bias)
        self.up1 = nn.Conv2d(hidden, hidden // 2, kernel_size=3, padding=1)
        self.up2 = nn.Conv2d(hidden // 2, hidden // 4, kernel_size=3, padding=1)
        self.out = nn.Conv2d(hidden // 4, 2, kernel_size=3, padding=1)

    def forward(self, fmap: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond).chunk(2, dim=1)
        h = self.reduce(fmap) * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        h = F.relu(h)
        h = F.relu(self.up1(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)))
        h = F.relu(self.up2(F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)))
        return torch.tanh(self.out(h))


@contextmanager
def frozen_bn_statistics(module: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers of ``module`` normalise with batch statistics (in training mode) but do
    not update their running statistics (momentum 0, batch count restored), so that an auxiliary pass on other
    inputs (greyscale crops) leaves the statistics used at evaluation as the main pass makes them."""
    saved = [(m, m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone())
             for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    try:
        for m, _, _ in saved:
            m.momentum = 0.0
        yield
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)

"""PPLR's soft-triplet term on the global embedding (the PPLR-style baseline's metric loss)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pairwise_euclidean(x: Tensor) -> Tensor:
    """``(B, B)`` Euclidean distances between the rows of ``x`` (``(B, D)``), from ``|a|^2 + |b|^2 - 2 a.b``
    clamped at 1e-12 before the square root, so the zero self-distances keep a finite gradient."""
    sq = (x * x).sum(dim=1)
    d2 = sq.unsqueeze(1) + sq.unsqueeze(0) - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_distances(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Batch-hard mining (Hermans et al.) shared by the triplet losses: per anchor of the ``(B, B)`` distance matrix,
    the distance to its farthest same-label sample (the anchor itself counts, so >= its self-distance) and to its
    nearest other-label sample (``inf`` when there is none)."""
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    d_pos = dist.masked_fill(~same, float("-inf")).max(dim=1).values  # the diagonal is always in ``same``
    d_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    return d_pos, d_neg


def soft_triplet_loss(embeddings: Tensor, labels: Tensor) -> Tensor:
    """Batch-hard softmax-triplet loss with margin 0, the metric term of PPLR's objective.

    PPLR ("Part-based Pseudo Label Refinement for Unsupervised Person Re-identification", Cho et al., CVPR 2022)
    trains its global branch with this term next to the refined cross entropy; the term is MMT's softmax-triplet
    loss with hard pseudo labels ("Mutual Mean-Teaching", Ge et al., ICLR 2020): for each anchor ``i`` of the
    batch, with ``d_p`` the Euclidean distance to its farthest same-label sample (the anchor itself counts, as in
    PPLR, so a lone anchor has ``d_p = 0``) and ``d_n`` the distance to its nearest other-label sample,

        ``l_i = -log( exp(d_n) / (exp(d_p) + exp(d_n)) ) = softplus(d_p - d_n)``,

    averaged over the batch. An anchor with no other-label sample in the batch contributes 0.

    Args:
        embeddings: ``(B, D)`` global embeddings. PPLR uses the BN-neck output before L2 normalisation;
            on unit vectors the distances lie in [0, 2] and the term is correspondingly gentler.
        labels: ``(B,)`` (pseudo) identities.
    """
    if embeddings.dim() != 2 or labels.shape != embeddings.shape[:1]:
        raise ValueError(f"expected embeddings (B, D) and labels (B,), got {tuple(embeddings.shape)} and "
                         f"{tuple(labels.shape)}")
    d_pos, d_neg = batch_hard_distances(pairwise_euclidean(embeddings), labels)
    return F.softplus(d_pos - d_neg).mean()


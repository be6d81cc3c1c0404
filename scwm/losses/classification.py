"""Part-based classification (paper Sec. 3.4, Eq. 13-15), following PPLR's AALS and PGLR."""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

IdTerms = Literal["both", "global", "parts"]
"""Which halves of Eq. 15 :func:`part_classification_loss` keeps."""


def _soft_ce(logits: Tensor, target: Tensor) -> Tensor:
    """``-sum_c y_c log softmax(logits)_c`` over the last axis (no reduction)."""
    return -(target * F.log_softmax(logits, dim=-1)).sum(dim=-1)


def part_classification_loss(
    global_logits: Tensor,
    part_logits: Tensor,
    labels: Tensor,
    alpha_parts: Tensor | None = None,
    beta: float = 0.35,
    smoothing_only_epsilon: float | None = None,
    terms: IdTerms = "both",
) -> Tensor:
    """Classification loss ``L_ID`` of Eq. 15 with the targets of Eq. 13 (parts) and Eq. 14 (global).

    - Parts (Eq. 13, PPLR's agreement-aware label smoothing):
      ``y^{p_k} = alpha^{p_k} onehot(y) + (1 - alpha^{p_k}) uniform``. PPLR writes this as
      ``alpha CE + (1 - alpha) KL(uniform || q)``, which differs from the soft cross entropy used here
      only by the constant ``(1 - alpha) log C`` (same gradient).
    - Global (Eq. 14, PPLR's part-guided label refinement):
      ``y^g = beta onehot(y) + (1 - beta) sum_k softmax_k(alpha^{p_k}) softmax(q^{p_k})``; the part
      ensemble is detached, as in PPLR.
    - ``L = CE(y^g, q^g) + mean_k CE(y^{p_k}, q^{p_k})``, each averaged over the batch; the part term is
      averaged over the P foreground parts.

    Warm-up (PPLR trains the parts with plain label smoothing 0.1 for the first epochs): when
    ``smoothing_only_epsilon`` is given, or ``alpha_parts`` is ``None``, the part targets are
    ``(1 - eps) onehot + eps uniform`` with ``eps = smoothing_only_epsilon`` (default 0.1). The part
    weights of Eq. 14 are ``softmax(alpha_parts)`` when ``alpha_parts`` is given, uniform otherwise.

    ``terms`` keeps both halves of Eq. 15 (``"both"``, the paper), only the global term (``"global"``) or
    only the part term (``"parts"``), for the ablation of each.

    Args:
        global_logits: ``(B, C)``; part_logits: ``(B, P, C)``; labels: ``(B,)`` in ``[0, C)``;
        alpha_parts: ``(B, P)`` cross agreement (Eq. 7) or ``None``.
    """
    if terms not in get_args(IdTerms):
        raise ValueError(f"terms must be one of {get_args(IdTerms)}, got {terms!r}")
    b, num_classes = global_logits.shape
    if part_logits.dim() != 3 or part_logits.shape[0] != b or part_logits.shape[2] != num_classes:
        raise ValueError(f"expected part_logits (B={b}, P, C={num_classes}), got {tuple(part_logits.shape)}")
    num_parts = part_logits.shape[1]
    if alpha_parts is not None and alpha_parts.shape != (b, num_parts):
        raise ValueError(f"expected alpha_parts ({b}, {num_parts}), got {tuple(alpha_parts.shape)}")
    # scatter instead of F.one_hot: one_hot validates the labels on the host (a device sync on CUDA)
    onehot = torch.zeros_like(global_logits).scatter_(1, labels.long().unsqueeze(1), 1.0)  # (B, C)
    uniform = 1.0 / num_classes

    if alpha_parts is None or smoothing_only_epsilon is not None:
        eps = 0.1 if smoothing_only_epsilon is None else float(smoothing_only_epsilon)
        part_target = ((1.0 - eps) * onehot + eps * uniform).unsqueeze(1)  # (B, 1, C)
    else:
        a = alpha_parts.detach().to(part_logits.dtype).unsqueeze(2)  # (B, P, 1)
        part_target = a * onehot.unsqueeze(1) + (1.0 - a) * uniform  # Eq. 13, (B, P, C)
    loss_parts = _soft_ce(part_logits, part_target.expand_as(part_logits)).mean()

    if alpha_parts is None:
        part_w = part_logits.new_full((b, num_parts, 1), 1.0 / num_parts)
    else:
        part_w = torch.softmax(alpha_parts.detach().to(part_logits.dtype), dim=1).unsqueeze(2)
    ensemble = (torch.softmax(part_logits.detach(), dim=2) * part_w).sum(dim=1)  # (B, C)
    global_target = beta * onehot + (1.0 - beta) * ensemble.to(global_logits.dtype)  # Eq. 14
    loss_global = _soft_ce(global_logits, global_target).mean()
    return {"both": loss_global + loss_parts, "global": loss_global, "parts": loss_parts}[terms]

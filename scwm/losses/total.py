"""Overall objective, Eq. 16 = L_SCC (Eq. 6) + L_WM (Eq. 12) + L_ID (Eq. 15), with ablation switches and
PPLR's soft-triplet term as an option (for the PPLR-style baseline)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from scwm.losses.classification import IdTerms, part_classification_loss
from scwm.losses.contrastive import part_separation_loss, wnce_loss
from scwm.losses.parsing import diversity_loss, parsing_loss
from scwm.losses.triplet import soft_triplet_loss
from scwm.memory.weighted import WeightedMemory, difficulty_weights


@dataclass(frozen=True)
class LossTerms:
    """Which terms of Eq. 16 are on, and their weights (all 1 in the paper).

    ``nce_weighted=False`` gives Cluster Contrast's plain ClusterNCE instead of wNCE (Eq. 10);
    ``nce_parts=False`` keeps only the global contrastive term; ``nce_literal`` is Eq. 10 as printed;
    ``id_terms`` keeps both halves of Eq. 15 (``"both"``) or only its ``"global"`` or ``"parts"`` term;
    ``diversity_sum`` is Eq. 5 as printed (sum over pixels instead of the pixel mean). ``soft_triplet`` adds
    PPLR's batch-hard soft-triplet term on the global embedding (not part of Eq. 16; off by default), on the
    L2-normalised global feature instead of the BN-neck output with ``soft_triplet_normalized``. ``tau=None``
    uses the memory's. The trainer's ``training.config.LossConfig`` exposes the switches under the same names.
    """

    nce: bool = True
    nce_weighted: bool = True
    nce_parts: bool = True
    nce_literal: bool = False
    separation: bool = True
    parsing: bool = True
    diversity: bool = True
    part_classification: bool = True
    id_terms: IdTerms = "both"
    diversity_sum: bool = False
    diversity_include_background: bool = True
    soft_triplet: bool = False
    soft_triplet_normalized: bool = False
    beta: float = 0.35
    tau: float | None = None
    lambda_nce: float = 1.0
    lambda_separation: float = 1.0
    lambda_parsing: float = 1.0
    lambda_diversity: float = 1.0
    lambda_id: float = 1.0
    lambda_soft_triplet: float = 1.0


def _need(value: Tensor | None, name: str, term: str) -> Tensor:
    if value is None:
        raise ValueError(f"loss term {term!r} is enabled but {name} was not given")
    return value


def total_loss(
    config: LossTerms,
    *,
    global_feats: Tensor,
    part_feats: Tensor,
    labels: Tensor,
    memory: WeightedMemory,
    part_probs: Tensor | None = None,
    target_masks: Tensor | None = None,
    valid_mask: Tensor | None = None,
    global_logits: Tensor | None = None,
    part_logits: Tensor | None = None,
    alpha_global: Tensor | None = None,
    alpha_parts: Tensor | None = None,
    smoothing_only_epsilon: float | None = None,
    embeddings: Tensor | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted sum of the enabled terms (Eq. 16) and a dict of the (detached) individual terms.

    Keys: ``"nce"`` (Eq. 10), ``"separation"`` (Eq. 11), ``"parsing"`` (Eq. 4), ``"diversity"``
    (Eq. 5), ``"id"`` (Eq. 15), ``"soft_triplet"`` (PPLR); disabled terms are absent. ``alpha_global`` defaults
    to the mean of ``alpha_parts`` (Eq. 7). ``embeddings`` are the global embeddings of the soft-triplet term
    (PPLR: the BN-neck output before L2 normalisation); they default to ``global_feats``. The memory is *not*
    updated here (call ``memory.update`` after backward).
    """
    terms: dict[str, Tensor] = {}
    weights: dict[str, float] = {}
    if config.nce:
        w_g = w_p = None
        if config.nce_weighted:
            a_p = _need(alpha_parts, "alpha_parts", "nce (weighted)")
            a_g = a_p.mean(dim=1) if alpha_global is None else alpha_global
            w_g, w_p = difficulty_weights(a_g, a_p)
        terms["nce"] = wnce_loss(
            global_feats,
            part_feats if config.nce_parts else None,
            labels,
            memory,
            w_global=w_g,
            w_parts=w_p,
            tau=config.tau,
            literal=config.nce_literal,
        )
        weights["nce"] = config.lambda_nce
    if config.separation:
        terms["separation"] = part_separation_loss(part_feats, labels, memory, tau=config.tau)
        weights["separation"] = config.lambda_separation
    if config.parsing:
        probs = _need(part_probs, "part_probs", "parsing")
        masks = _need(target_masks, "target_masks", "parsing")
        terms["parsing"] = parsing_loss(probs, masks, valid_mask=valid_mask)
        weights["parsing"] = config.lambda_parsing
    if config.diversity:
        probs = _need(part_probs, "part_probs", "diversity")
        terms["diversity"] = diversity_loss(
            probs,
            include_background=config.diversity_include_background,
            normalize=not config.diversity_sum,
        )
        weights["diversity"] = config.lambda_diversity
    if config.part_classification:
        terms["id"] = part_classification_loss(
            _need(global_logits, "global_logits", "part_classification"),
            _need(part_logits, "part_logits", "part_classification"),
            labels,
            alpha_parts,
            beta=config.beta,
            smoothing_only_epsilon=smoothing_only_epsilon,
            terms=config.id_terms,
        )
        weights["id"] = config.lambda_id
    if config.soft_triplet:
        on = global_feats if embeddings is None or config.soft_triplet_normalized else embeddings
        terms["soft_triplet"] = soft_triplet_loss(on, labels)
        weights["soft_triplet"] = config.lambda_soft_triplet
    total = global_feats.sum() * 0.0
    for name, value in terms.items():
        total = total + weights[name] * value
    return total, {name: value.detach() for name, value in terms.items()}

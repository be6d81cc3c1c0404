"""SCWM losses, one function per equation (paper Eq. 4-5, 10-11, 13-16), and PPLR's soft triplet."""

from scwm.losses.classification import part_classification_loss
from scwm.losses.contrastive import cluster_nce_terms, part_separation_loss, wnce_loss
from scwm.losses.parsing import diversity_loss, parsing_loss
from scwm.losses.total import LossTerms, total_loss
from scwm.losses.triplet import pairwise_euclidean, soft_triplet_loss

__all__ = [
    "LossTerms",
    "cluster_nce_terms",
    "diversity_loss",
    "pairwise_euclidean",
    "parsing_loss",
    "part_classification_loss",
    "part_separation_loss",
    "soft_triplet_loss",
    "total_loss",
    "wnce_loss",
]

"""Clustering stage (Sec. 3.1): sparse k-reciprocal Jaccard distance, DBSCAN pseudo labels, and the
kNN cross agreement of global and part features (Eq. 7)."""

from .agreement import cross_agreement
from .dbscan import pseudo_labels, relabel_by_first_member
from .jaccard import jaccard_distance, topk_neighbours

__all__ = [
    "cross_agreement",
    "jaccard_distance",
    "pseudo_labels",
    "relabel_by_first_member",
    "topk_neighbours",
]

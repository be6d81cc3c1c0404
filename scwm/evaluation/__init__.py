"""Re-ID evaluation: CMC / mAP / mINP (Market-1501 protocol), chunked feature evaluation, re-ranking."""

from .chunked import chunk_size_for_budget, evaluate_features, pairwise_distance
from .rank import RankResult, evaluate_rank
from .rerank import re_ranking

__all__ = [
    "RankResult",
    "evaluate_rank",
    "evaluate_features",
    "pairwise_distance",
    "chunk_size_for_budget",
    "re_ranking",
]

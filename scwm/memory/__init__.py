"""Weighted centroid memory (paper Sec. 3.3, Eq. 8-9)."""

from scwm.memory.weighted import UpdateStrategy, WeightedMemory, WeightNormalization, difficulty_weights

__all__ = ["UpdateStrategy", "WeightNormalization", "WeightedMemory", "difficulty_weights"]

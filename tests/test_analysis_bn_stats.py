"""BatchNorm neck statistics: known answers for matched and shifted statistics."""

from __future__ import annotations

import math

import pytest
import torch

from experiments.analyses.bn_stats import neck_stats


def test_matched_statistics_are_centred() -> None:
    torch.manual_seed(0)
    feats = torch.randn(4000, 8) * torch.linspace(0.5, 2.0, 8) + torch.arange(8.0)
    st = neck_stats(feats.mean(0), feats.var(0), feats.mean(0), feats.var(0))
    assert st["mean_abs_z"] == pytest.approx(0.0, abs=1e-5)
    assert st["var_ratio"] == pytest.approx(1.0, abs=1e-5) and st["corr_means"] == pytest.approx(1.0)


def test_fresh_running_stats_against_shifted_features() -> None:
    """A fresh neck (mean 0, var 1) against features of mean 0.7 and variance 0.04: |z| = 0.7, ratio 0.04."""
    torch.manual_seed(1)
    feats = 0.7 + 0.2 * torch.randn(20000, 16)
    st = neck_stats(torch.zeros(16), torch.ones(16), feats.mean(0), feats.var(0))
    assert st["mean_abs_z"] == pytest.approx(0.7, abs=0.01)
    assert st["var_ratio"] == pytest.approx(0.04, abs=0.002)
    assert st["running_mean"] == 0.0 and st["target_mean"] == pytest.approx(0.7, abs=0.01)
    assert math.isnan(st["corr_means"])  # a constant running mean has no correlation

"""The soak's leak verdict (``benchmarks.load_clients.rss_trend``) on RSS series with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import load_clients as lc

SECONDS = 600.0
T = np.arange(0.0, SECONDS + 1, 1.0)


def _done(rate: float) -> np.ndarray:
    return np.floor(T * rate)


def test_steady_growth_is_a_leak_with_the_right_slopes() -> None:
    # 3 MB/min, the growth the first rule (> 16 MB and 2 % over the second half) let through
    rss = 1160.0 + 3.0 * T / 60
    r = lc.rss_trend(T, rss, _done(0.8), SECONDS)
    assert r["rss_slope_mb_per_min"] == pytest.approx(3.0)
    assert r["rss_second_half_growth_mb"] == pytest.approx(15.0)
    assert r["rss_mb_per_1000_requests"] == pytest.approx(3.0 / 60 / 0.8 * 1000, rel=0.01)
    assert r["leak"]


def test_slow_growth_per_request_is_a_leak_once_the_soak_resolves_it() -> None:
    # 0.6 MB/min over 5 minutes = 3 MB (under the 8 MB rule), but 5 MB per 1000 requests at 2 req/s
    rng = np.random.default_rng(1)
    rss = 1100.0 + 0.6 * T / 60 + rng.normal(0.0, 0.5, T.shape)
    r = lc.rss_trend(T, rss, _done(2.0), SECONDS)
    assert r["rss_second_half_growth_mb"] < lc.LEAK_MB
    assert r["rss_mb_per_1000_requests"] == pytest.approx(5.0, abs=0.5) and r["leak"]
    # 3 MB per 1000 requests at 1 req/s under 5 MB of sampling jitter: 300 requests cannot resolve it
    noisy = 1100.0 + 0.003 * _done(1.0) + rng.normal(0.0, 5.0, T.shape)
    few = lc.rss_trend(T, noisy, _done(1.0), SECONDS)
    assert few["rss_mb_per_1000_requests"] < lc.SLOPE_Z * few["rss_mb_per_1000_requests_se"] and not few["leak"]


def test_growth_that_levels_off_is_not_a_leak() -> None:
    # +60 MB over the first two minutes (pools, caches, arenas), then flat with 2 MB of sampling noise
    rng = np.random.default_rng(0)
    rss = 1100.0 + 60.0 * np.minimum(T, 120.0) / 120.0 + rng.normal(0.0, 2.0, T.shape)
    r = lc.rss_trend(T, rss, _done(4.0), SECONDS)
    assert abs(r["rss_second_half_growth_mb"]) < lc.LEAK_MB / 2 and not r["leak"]


def test_the_verdict_follows_the_floor_not_the_transient_peaks() -> None:
    # a search holds ~25 MB for a moment: peaks at a random 30 % of the samples, more of them late in the run
    rng = np.random.default_rng(2)
    peaks = 25.0 * (rng.random(T.shape) < 0.1 + 0.4 * T / SECONDS)
    flat = lc.rss_trend(T, 1050.0 + peaks + rng.normal(0.0, 0.5, T.shape), _done(1.0), SECONDS)
    assert not flat["leak"] and abs(flat["rss_second_half_growth_mb"]) < 2.0
    rising = lc.rss_trend(T, 1050.0 + 0.02 * _done(1.0) + peaks, _done(1.0), SECONDS)  # keeps 20 MB / 1000
    assert rising["leak"] and rising["rss_mb_per_1000_requests"] == pytest.approx(20.0, abs=2.0)


def test_shrinking_rss_and_short_series_are_not_leaks() -> None:
    assert not lc.rss_trend(T, 1200.0 - T / 60, _done(4.0), SECONDS)["leak"]
    short = np.arange(0.0, 7.0)  # a 6-s soak sampled every second: 4 samples in the half, too few blocks
    r = lc.rss_trend(short, 100.0 + 50.0 * short, np.arange(7) * 3, 6.0)
    assert r["rss_slope_mb_per_min"] == 0.0 and r["rss_mb_per_1000_requests"] == 0.0 and not r["leak"]

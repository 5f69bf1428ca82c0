"""A profile built from samples keeps a rare outlier at its measured weight (profile_format.sample_levels)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from capsim.servicetime.profile_format import DEFAULT_QUANTILE_LEVELS, Profile, sample_levels


def implied_mean_and_exceedance(
    levels: list[float], quantiles_ms: list[float], threshold_ms: float
) -> tuple[float, float]:
    """Exact mean and P(T > threshold) of the draws a profile curve gives: the inverse CDF is linear
    between levels, so each step contributes its mass times the mean of its two ends."""
    mean_ms = exceed = 0.0
    for (lo_level, hi_level), (lo_ms, hi_ms) in zip(
        itertools.pairwise(levels), itertools.pairwise(quantiles_ms), strict=True
    ):
        mass = hi_level - lo_level
        mean_ms += mass * (lo_ms + hi_ms) / 2
        if hi_ms > threshold_ms:
            start = 0.0 if lo_ms >= threshold_ms else (threshold_ms - lo_ms) / (hi_ms - lo_ms)
            exceed += mass * (1.0 - start)
    return mean_ms, exceed


def stalled_batches_ms() -> np.ndarray:
    """19,999 batches of about 2 ms and one 131 ms stall (as the CPU transformer's batch log had)."""
    rng = np.random.default_rng(7)
    return np.append(rng.normal(2.0, 0.2, 19_999).clip(1.0), 131.0)


def test_levels_reach_one_sample_share_at_the_top() -> None:
    assert sample_levels(500) == DEFAULT_QUANTILE_LEVELS
    assert sample_levels(1000) == DEFAULT_QUANTILE_LEVELS  # the 0.999 → 1 step already holds 1/1000
    assert sample_levels(19_000)[-3:] == pytest.approx((0.9999, 0.99999, 1.0))
    for count in (1001, 10_000, 19_000, 2_000_000):
        levels = sample_levels(count)
        assert 1.0 - levels[-2] <= 1.0 / count + 1e-15
        assert all(b > a for a, b in itertools.pairwise(levels))


def test_a_rare_stall_keeps_its_measured_weight() -> None:
    samples = stalled_batches_ms()
    profile = Profile.from_samples({1: samples}, model={"name": "t"}, source="test")
    point = profile.points[0]
    assert point.quantiles_ms[-1] == 131.0
    mean_ms, exceed = implied_mean_and_exceedance(profile.quantile_levels, point.quantiles_ms, 10.0)
    assert mean_ms == pytest.approx(samples.mean(), rel=0.002)
    assert exceed <= 2.0 / samples.size  # measured: 1 in 20,000 above 10 ms

    # The fixed default levels give the step from the 0.999 quantile to the maximum 0.1% of the
    # draws: twenty times the stall's weight, and a mean 3% high. This is what sample_levels fixes.
    coarse = np.quantile(samples, DEFAULT_QUANTILE_LEVELS).tolist()
    coarse_mean_ms, coarse_exceed = implied_mean_and_exceedance(list(DEFAULT_QUANTILE_LEVELS), coarse, 10.0)
    assert coarse_exceed > 15.0 / samples.size
    assert coarse_mean_ms > samples.mean() * 1.02

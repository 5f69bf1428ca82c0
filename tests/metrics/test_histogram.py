"""Mergeable histograms keep percentiles within their relative-error bound."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.metrics.histogram import LogHistogram


def test_quantiles_within_one_percent_and_exact_merge() -> None:
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.lognormal(np.log(5.0), 0.8, 150_000), rng.exponential(50.0, 50_000)])
    whole = LogHistogram(relative_error=0.005)
    whole.add(values)
    parts = [LogHistogram(relative_error=0.005) for _ in range(4)]
    for part, chunk in zip(parts, np.array_split(values, 4), strict=False):
        part.add(chunk)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    np.testing.assert_array_equal(merged.counts[: whole.counts.size], whole.counts[: merged.counts.size])
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        exact = np.quantile(values, q)
        assert abs(merged.quantile(q) / exact - 1) <= 0.01, q
    assert merged.mean() == pytest.approx(values.mean())
    assert merged.quantile(1.0) == values.max()


def test_merge_requires_same_parameters() -> None:
    with pytest.raises(ValueError):
        LogHistogram(0.01).merge(LogHistogram(0.005))

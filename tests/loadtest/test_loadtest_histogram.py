"""HDR histograms: percentiles within 1% of exact ones, and merging across workers is exact."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.loadtest.histogram import HIGHEST_US, LatencyHistogram, merge_all

PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@pytest.mark.parametrize("seed", [0, 1])
def test_merged_worker_histograms_match_numpy_percentiles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Latencies from 0.1 ms to seconds: a log-normal body and a heavy tail.
    samples_ms = np.concatenate([rng.lognormal(np.log(5.0), 0.8, 150_000), rng.pareto(1.5, 10_000) * 50 + 0.1])
    workers = np.array_split(rng.permutation(samples_ms), 4)
    # Each worker encodes its histogram as it would ship it; the parent decodes and merges.
    shipped = [LatencyHistogram.from_values_ms(part).encode() for part in workers]
    merged = merge_all(LatencyHistogram.decode(text) for text in shipped)
    assert merged.count == samples_ms.size
    for pct in PERCENTILES:
        exact = float(np.percentile(samples_ms, pct, method="inverted_cdf"))
        assert merged.percentile_ms(pct) == pytest.approx(exact, rel=0.01), pct
    assert merged.max_ms() == pytest.approx(samples_ms.max(), rel=0.01)
    assert merged.mean_ms() == pytest.approx(samples_ms.mean(), rel=0.01)


def test_merge_equals_one_histogram_of_all_samples() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.exponential(10.0, 50_000), rng.exponential(3.0, 50_000)
    merged = LatencyHistogram.from_values_ms(a).merge(LatencyHistogram.from_values_ms(b))
    together = LatencyHistogram.from_values_ms(np.concatenate([a, b]))
    for pct in (1.0, *PERCENTILES, 100.0):
        assert merged.percentile_ms(pct) == together.percentile_ms(pct)


def test_record_one_by_one_equals_bulk() -> None:
    values = [0.0004, 0.001, 1.5, 1.5, 20.25, 3000.0]
    one = LatencyHistogram()
    for v in values:
        one.record_ms(v)
    bulk = LatencyHistogram.from_values_ms(values)
    assert one.summary_ms() == bulk.summary_ms()
    assert one.count == bulk.count == len(values)


def test_values_beyond_an_hour_are_clipped_and_counted() -> None:
    hist = LatencyHistogram.from_values_ms([1.0, HIGHEST_US / 1000.0 * 2])
    assert hist.clipped == 1 and hist.count == 2
    one = LatencyHistogram()
    one.record_ms(HIGHEST_US)
    assert one.clipped == 1


def test_empty_summary_has_no_nan() -> None:
    assert all(v is None for v in LatencyHistogram().summary_ms().values())

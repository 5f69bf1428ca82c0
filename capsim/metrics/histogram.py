"""Mergeable log-bucketed histograms with bounded relative error, for runs too long to keep every
request. Buckets grow geometrically by gamma = (1 + a) / (1 - a); reporting each bucket by
2·gamma^i / (gamma + 1) keeps the relative error of any quantile within `a` (the DDSketch bound).

Why not HdrHistogram, which the load tester uses (capsim/loadtest/histogram.py): the compiled
loops fold each finished record as it happens (the streaming loop, capsim/serving/streaming/fold.py;
the LLM loop's inter-token latencies, capsim/serving/llm/plane.py), and numba's nopython code cannot
call `hdrh`, while this bucket rule, one `log` and one `ceil`, compiles. It is also needed for speed:
benchmarks/histogram_fold.py, 1M latencies one at a time on the 2-core VM: this rule in numba
6.5 ns/value, `HdrHistogram.record_value` 870 ns/value (133x); run again 2026-12-07 with other jobs
on the machine (load ~3.9): 14.8 vs 2,048 ns/value (139x). In bulk both are vectorized (0.010 s
and 0.021 s for 1M values; 0.027 s and 0.057 s on the loaded machine). And the simulator runs on
the base install, which leaves `hdrhistogram` out.
"""

from __future__ import annotations

import math

import numpy as np


def bucket_index(value: np.ndarray | float, min_value: float, log_gamma: float) -> np.ndarray | float:
    """The bucket of a value above `min_value` (as a float; a value or an array): the one rule, which
    the compiled loops fold with (capsim/metrics/loop_stats.py)."""
    return np.ceil(np.log(value / min_value) / log_gamma)


class LogHistogram:
    """Counts of positive values in geometric buckets; values <= `min_value` share the first bucket."""

    def __init__(self, relative_error: float = 0.005, min_value: float = 1e-6) -> None:
        if not 0 < relative_error < 1:
            raise ValueError("relative_error must be in (0, 1)")
        self.relative_error = relative_error
        self.gamma = (1 + relative_error) / (1 - relative_error)
        self._log_gamma = math.log(self.gamma)
        self.min_value = min_value
        self.counts = np.zeros(1024, dtype=np.int64)
        self.total = 0
        self.sum = 0.0
        self.max = -math.inf
        self.min = math.inf
        self.zero_count = 0  # values <= min_value

    def _index(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(bucket_index(values, self.min_value, self._log_gamma)).astype(np.int64)

    def add(self, values: np.ndarray) -> None:
        """Record many values at once."""
        values = np.asarray(values, dtype=float)
        if values.size == 0:
            return
        self.total += values.size
        self.sum += float(values.sum())
        self.max = max(self.max, float(values.max()))
        self.min = min(self.min, float(values.min()))
        positive = values[values > self.min_value]
        self.zero_count += values.size - positive.size
        if positive.size == 0:
            return
        idx = self._index(positive)
        top = int(idx.max())
        if top >= self.counts.size:
            grown = np.zeros(max(top + 1, 2 * self.counts.size), dtype=np.int64)
            grown[: self.counts.size] = self.counts
            self.counts = grown
        self.counts += np.bincount(idx, minlength=self.counts.size)

    def merge(self, other: LogHistogram) -> None:
        """Add another histogram with the same parameters into this one (exact)."""
        if other.gamma != self.gamma or other.min_value != self.min_value:
            raise ValueError("can only merge histograms with the same relative error and minimum")
        if other.counts.size > self.counts.size:
            self.counts = np.concatenate([self.counts, np.zeros(other.counts.size - self.counts.size, np.int64)])
        self.counts[: other.counts.size] += other.counts
        self.total += other.total
        self.sum += other.sum
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)
        self.zero_count += other.zero_count

    def quantile(self, q: float) -> float:
        """The q-quantile (0..1), within `relative_error` of the exact value (NaN when empty)."""
        if self.total == 0:
            return math.nan
        if q >= 1.0:
            return self.max
        rank = q * (self.total - 1)  # the same rank convention as numpy's default (linear) method
        if rank < self.zero_count:
            return self.min
        cumulative = np.cumsum(self.counts) + self.zero_count
        i = int(np.searchsorted(cumulative, rank, side="right"))
        value = self.min_value * 2 * self.gamma**i / (self.gamma + 1)
        return min(max(value, self.min), self.max)

    def mean(self) -> float:
        """Exact mean of the recorded values."""
        return self.sum / self.total if self.total else math.nan

"""Latency histograms with bounded relative error that merge exactly across workers.

A thin wrapper over HdrHistogram (the `hdrhistogram` package): values are recorded as integer
microseconds from 1 µs to one hour with 3 significant digits, so any reported percentile is within
0.1% of the true sample value (the recorded value is rounded inside its bucket, never by more than
one part in 2**10). Two histograms with the same layout add bucket by bucket, so merging the
histograms of N workers gives exactly the histogram of all their samples: this is why the harness
never takes percentiles from Locust's statistics, which round response times to two digits.

The simulator keeps its own log-bucketed histogram (capsim/metrics/histogram.py) because its
compiled loops fold into it and cannot call `hdrh` (measured there); here, in Python, HdrHistogram's
standard encoding ships each worker's histogram to the master, and its fixed µs layout keeps 0.1%.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: a stalled request is still recorded, never clipped
SIGNIFICANT_DIGITS = 3

# The summary keys shared with `capsim simulate --json`.
PERCENTILE_KEYS: dict[str, float] = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


class LatencyHistogram:
    """An HDR histogram of latencies in milliseconds (stored as integer microseconds)."""

    __slots__ = ("_hist", "clipped")

    def __init__(self, hist: HdrHistogram | None = None) -> None:
        self._hist = hist if hist is not None else HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self.clipped = 0  # values above one hour, recorded as one hour

    @classmethod
    def from_values_ms(cls, values_ms: Iterable[float] | np.ndarray) -> LatencyHistogram:
        """A histogram holding every value of `values_ms`."""
        hist = cls()
        hist.record_many_ms(values_ms)
        return hist

    def record_ms(self, value_ms: float) -> None:
        """Record one latency; negative values (clock steps) count as 0 µs, rounded up to 1 µs."""
        value_us = int(value_ms * 1000.0 + 0.5)
        if value_us < LOWEST_US:
            value_us = LOWEST_US
        elif value_us > HIGHEST_US:
            value_us = HIGHEST_US
            self.clipped += 1
        self._hist.record_value(value_us)

    def record_many_ms(self, values_ms: Iterable[float] | np.ndarray) -> None:
        """Record many latencies; equal microsecond values are recorded once with a count."""
        values_us = np.rint(np.asarray(values_ms, dtype=np.float64) * 1000.0)
        values_us = values_us[np.isfinite(values_us)]
        if values_us.size == 0:
            return
        self.clipped += int(np.count_nonzero(values_us > HIGHEST_US))
        values_us = np.clip(values_us, LOWEST_US, HIGHEST_US).astype(np.int64)
        hist = self._hist
        # HdrHistogram's bucket index (hdrh's _counts_index_for), vectorized: record_value costs a few
        # µs per call in Python, this costs a few ns per value.
        _, bit_length = np.frexp((values_us | hist.sub_bucket_mask).astype(np.float64))
        bucket = bit_length.astype(np.int64) - hist.unit_magnitude - (hist.sub_bucket_half_count_magnitude + 1)
        sub_bucket = values_us >> (bucket + hist.unit_magnitude)
        index = ((bucket + 1) << hist.sub_bucket_half_count_magnitude) + sub_bucket - hist.sub_bucket_half_count
        counts = np.ctypeslib.as_array(hist.counts)
        counts += np.bincount(index, minlength=hist.counts_len).astype(counts.dtype)
        hist.total_count += int(values_us.size)
        hist.min_value = min(hist.min_value, int(values_us.min()))
        hist.max_value = max(hist.max_value, int(values_us.max()))

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add `other`'s counts into this histogram (exact: same bucket layout); returns self."""
        self._hist.add(other._hist)
        self.clipped += other.clipped
        return self

    @property
    def count(self) -> int:
        """Number of recorded values."""
        return int(self._hist.get_total_count())

    def percentile_ms(self, percentile: float) -> float:
        """The value below or at which `percentile`% of the samples lie (nearest rank), in ms."""
        if self.count == 0:
            return float("nan")
        return self._hist.get_value_at_percentile(percentile) / 1000.0

    def mean_ms(self) -> float:
        """Mean of the recorded values (bucket midpoints), in ms."""
        return self._hist.get_mean_value() / 1000.0 if self.count else float("nan")

    def max_ms(self) -> float:
        """Largest recorded value (within the 3-digit precision), in ms."""
        return self._hist.get_max_value() / 1000.0 if self.count else float("nan")

    def summary_ms(self) -> dict[str, float | None]:
        """`{"mean","p50","p90","p95","p99","p999","max"}` in ms; None when empty (JSON has no NaN)."""
        if self.count == 0:
            return {key: None for key in ("mean", *PERCENTILE_KEYS, "max")}
        out: dict[str, float | None] = {"mean": round(self.mean_ms(), 4)}
        for key, pct in PERCENTILE_KEYS.items():
            out[key] = round(self.percentile_ms(pct), 4)
        out["max"] = round(self.max_ms(), 4)
        return out

    def encode(self) -> str:
        """Compressed base64 text (HdrHistogram's standard V2 encoding), for shipping between processes."""
        return self._hist.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str | bytes) -> LatencyHistogram:
        """Inverse of `encode`."""
        raw = text.encode("ascii") if isinstance(text, str) else text
        return cls(HdrHistogram.decode(raw))


def merge_all(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    """One histogram holding the samples of all `histograms`."""
    merged = LatencyHistogram()
    for hist in histograms:
        merged.merge(hist)
    return merged

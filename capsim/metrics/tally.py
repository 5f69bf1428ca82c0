"""Per-request ("tally") statistics of one replication, folded in block by block.

The same aggregate serves both memory modes: with the request log kept it holds the exact values;
with `--no-request-log` it folds them into mergeable histograms (relative error <= 0.5%), so a
simulated day at thousands of requests per second fits in memory.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from capsim.metrics.histogram import LogHistogram
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT, REJECTED, TIMED_OUT, Columns

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


class ValueDistribution(Protocol):
    """Collects values and summarizes them as mean, percentiles and max."""

    def add(self, values: np.ndarray) -> None:
        """Record values."""
        ...

    def summary(self) -> dict[str, float]:
        """{"mean", "p50", "p90", "p95", "p99", "p999", "max"}; NaN when empty."""
        ...

    def quantile(self, q: float) -> float:
        """The q-quantile, 0 <= q <= 1."""
        ...


class ExactValues:
    """Keeps every value: exact percentiles (numpy's linear interpolation)."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._values: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        self._parts.append(np.array(values, dtype=float))
        self._values = None

    def values(self) -> np.ndarray:
        """All recorded values, sorted."""
        if self._values is None:
            self._values = np.sort(np.concatenate(self._parts)) if self._parts else np.empty(0)
        return self._values

    def quantile(self, q: float) -> float:
        values = self.values()
        return float(np.quantile(values, q)) if values.size else math.nan

    def summary(self) -> dict[str, float]:
        values = self.values()
        if values.size == 0:
            return empty_summary()
        qs = np.quantile(values, [p / 100.0 for p in PERCENTILES.values()])
        result = {"mean": float(values.mean())}
        result.update({k: float(v) for k, v in zip(PERCENTILES, qs, strict=True)})
        result["max"] = float(values[-1])
        return result


class HistogramValues:
    """Folds values into a LogHistogram: bounded memory, bounded relative error."""

    def __init__(self, relative_error: float = 0.005) -> None:
        self.histogram = LogHistogram(relative_error=relative_error)

    def add(self, values: np.ndarray) -> None:
        self.histogram.add(values)

    def quantile(self, q: float) -> float:
        return self.histogram.quantile(q)

    def summary(self) -> dict[str, float]:
        h = self.histogram
        if h.total == 0:
            return empty_summary()
        result = {"mean": h.mean()}
        result.update({k: h.quantile(p / 100.0) for k, p in PERCENTILES.items()})
        result["max"] = h.max
        return result


def empty_summary() -> dict[str, float]:
    """The distribution summary of no values."""
    return {"mean": math.nan, **{k: math.nan for k in PERCENTILES}, "max": math.nan}


class RequestTally:
    """Counts and distributions of the requests that arrived after warm-up."""

    def __init__(self, warmup_s: float, slo_latency_s: float | None, exact: bool) -> None:
        self.warmup_s = warmup_s
        self.slo_latency_s = slo_latency_s
        make = ExactValues if exact else HistogramValues
        self.latency_ms: ValueDistribution = make()
        self.queue_wait_ms: ValueDistribution = make()
        self.arrived = self.completed = self.rejected = self.timed_out = self.in_flight = 0
        self.cache_hits = 0
        self.within_slo = 0
        self.batches_by_size = np.zeros(1, dtype=float)  # requests served in batches of each size
        self.served_sojourn_s = 0.0  # time from arrival to completion at the replica, summed

    def add(self, cols: Columns, overhead_s: float) -> None:
        """Fold a block of finished (or, at the end, unfinished) rows into the tally."""
        # Row masks rather than copies of the block's columns: a block can be a whole run's log
        # (millions of rows), and copying every column past warm-up doubled the memory it needs.
        arrival_s, outcome = cols["arrival_s"], cols["outcome"]
        keep = arrival_s >= self.warmup_s
        self.arrived += int(keep.sum())
        done = keep & (outcome == COMPLETED)
        self.completed += int(done.sum())
        self.rejected += int((keep & (outcome == REJECTED)).sum())
        self.timed_out += int((keep & (outcome == TIMED_OUT)).sum())
        self.in_flight += int((keep & (outcome == IN_FLIGHT)).sum())
        latency_s = cols["end_s"][done]
        latency_s -= arrival_s[done]
        if self.slo_latency_s is not None:
            self.within_slo += int((latency_s <= self.slo_latency_s).sum())
        latency_s *= 1000.0
        self.latency_ms.add(latency_s)
        del latency_s
        served = done & ~cols["cache_hit"]
        self.cache_hits += int((done & cols["cache_hit"]).sum())
        served_arrival_s = arrival_s[served]
        wait_s = cols["start_s"][served] - served_arrival_s
        np.maximum(wait_s, 0.0, out=wait_s)
        wait_s *= 1000.0
        self.queue_wait_ms.add(wait_s)
        del wait_s
        self.served_sojourn_s += float((cols["end_s"][served] - served_arrival_s).sum())
        self.served_sojourn_s -= overhead_s * int(served.sum())
        sizes = cols["batch_size"][served]
        if sizes.size:
            self._add_batch_sizes(np.bincount(sizes).astype(float))

    def _add_batch_sizes(self, requests_by_size: np.ndarray) -> None:
        if requests_by_size.size > self.batches_by_size.size:
            requests_by_size = requests_by_size.copy()
            requests_by_size[: self.batches_by_size.size] += self.batches_by_size
            self.batches_by_size = requests_by_size
        else:
            self.batches_by_size[: requests_by_size.size] += requests_by_size

    def add_counted(self, completed: int, within_slo: int, served_sojourn_s: float, requests_by_size: np.ndarray,
                    latency_ms: LogHistogram, queue_wait_ms: LogHistogram) -> None:  # fmt: skip
        """Fold in requests a compiled loop counted itself as they completed, all after warm-up and
        served by a replica (bounded-memory mode: the distributions are histograms)."""
        self.arrived += completed
        self.completed += completed
        self.within_slo += within_slo if self.slo_latency_s is not None else 0
        self.served_sojourn_s += served_sojourn_s
        self._add_batch_sizes(requests_by_size)
        for dist, part in ((self.latency_ms, latency_ms), (self.queue_wait_ms, queue_wait_ms)):
            assert isinstance(dist, HistogramValues)
            dist.histogram.merge(part)

    def batch_size_summary(self) -> dict[str, float]:
        """Mean, median and max size of the batches that were formed (each batch counted once)."""
        requests_by_size = self.batches_by_size
        sizes = np.arange(requests_by_size.size)
        batches = np.divide(requests_by_size, sizes, out=np.zeros_like(requests_by_size), where=sizes > 0)
        total = batches.sum()
        if total <= 0:
            return {"mean": math.nan, "p50": math.nan, "max": math.nan}
        cumulative = np.cumsum(batches) / total
        return {
            "mean": float((batches * sizes).sum() / total),
            "p50": float(sizes[np.searchsorted(cumulative, 0.5 - 1e-12)]),
            "max": float(sizes[np.flatnonzero(batches > 0)[-1]]),
        }

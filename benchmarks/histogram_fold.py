"""Why the simulator keeps its own log-bucketed histogram (capsim/metrics/histogram.py) beside
HdrHistogram (capsim/loadtest/histogram.py): the cost of folding latencies one at a time, as a
compiled event loop folds each finished request, and in bulk, as the summaries do.

Compares, per value: HdrHistogram's `record_value` (Python, the only way to add one value to it;
numba's nopython mode cannot call it) against the log-bucket rule of `LogHistogram` compiled with
numba; and in bulk (1M values): `LogHistogram.add` against `LatencyHistogram.record_many_ms` (both
vectorized with numpy). Needs the loadtest extra (hdrh). Run: python benchmarks/histogram_fold.py
[--values N] (prints figures; asserts nothing).
"""

from __future__ import annotations

import argparse
import math
import time

import numba
import numpy as np
from hdrh.histogram import HdrHistogram

from capsim.loadtest.histogram import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS, LatencyHistogram
from capsim.metrics.histogram import LogHistogram


@numba.njit(cache=False)
def fold_one_by_one(values: np.ndarray, counts: np.ndarray, min_value: float, log_gamma: float) -> int:
    """LogHistogram's bucket rule, one value at a time, inside compiled code."""
    below = 0
    for v in values:
        if v <= min_value:
            below += 1
        else:
            counts[math.ceil(math.log(v / min_value) / log_gamma)] += 1
    return below


def best_of(repeats: int, work: object) -> float:
    """Shortest wall time of `repeats` calls of `work()`, in seconds."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    n = parser.parse_args().values
    latencies_ms = np.random.default_rng(1).lognormal(math.log(20.0), 0.6, n)

    sketch = LogHistogram()
    counts = np.zeros(4096, dtype=np.int64)
    fold_one_by_one(latencies_ms[:10], counts, sketch.min_value, math.log(sketch.gamma))  # compile first
    compiled_s = best_of(3, lambda: fold_one_by_one(latencies_ms, counts, sketch.min_value, math.log(sketch.gamma)))

    values_us = np.rint(latencies_ms * 1000.0).astype(np.int64).tolist()
    m = min(n, 200_000)  # the Python loop is slow: time a slice and scale

    def hdr_one_by_one() -> None:
        hist = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        for v in values_us[:m]:
            hist.record_value(v)

    hdr_s = best_of(1, hdr_one_by_one) * n / m
    bulk_sketch_s = best_of(3, lambda: LogHistogram().add(latencies_ms))
    bulk_hdr_s = best_of(3, lambda: LatencyHistogram.from_values_ms(latencies_ms))
    print(f"{n:,} latencies folded one at a time (as a compiled event loop folds each finished request):")
    print(f"  LogHistogram's rule in numba      {compiled_s * 1e9 / n:8.1f} ns/value  {compiled_s:7.3f} s")
    print(f"  HdrHistogram.record_value (Python) {hdr_s * 1e9 / n:7.1f} ns/value  {hdr_s:7.3f} s"
          f"  ({hdr_s / compiled_s:.0f}x; and not callable from nopython code)")
    print(f"{n:,} latencies in bulk (numpy):")
    print(f"  LogHistogram.add                  {bulk_sketch_s:7.3f} s")
    print(f"  LatencyHistogram.record_many_ms   {bulk_hdr_s:7.3f} s")


if __name__ == "__main__":
    main()

"""Statistics of scored records folded inside the compiled loop, for runs without a request log
(`keep_requests=False`): the same figures `capsim.serving.pull_run.ItemFold` derives from rows —
counts, the latency and queue-wait histograms (the `LogHistogram` bucket rule, compiled), the SLO
count, batch sizes, and per tick interval the arrivals, completions, latency sums and the waiting
area — so that a day of hundreds of millions of events keeps no per-record rows at all.

Records still unscored at the end of the run are folded by `ItemFold` from the topic's rows
(group.py); `into` then adds what the loop folded, so every record is counted once.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import numpy as np
from numba import njit

from capsim.metrics.histogram import LogHistogram, bucket_index
from capsim.metrics.intervals import open_area_from_bins
from capsim.serving.pull_run import ItemFold

_bucket = njit(cache=True)(bucket_index)

# scalars: ints
I_ON = 0  # 1: fold here (no request log); 0: the loop writes rows instead
I_COUNT = 1  # records scored that arrived after warm-up
I_WITHIN_SLO = 2
N_INTS = 3
# scalars: floats
F_WARMUP_S = 0
F_SLO_S = 1  # inf without an SLO
F_SOJOURN_S = 2  # sum of scored records' time from event to score
F_MIN_VALUE = 3  # the histograms' parameters (LogHistogram.min_value, log gamma)
F_LOG_GAMMA = 4
N_FLOATS = 5
# per histogram (latency row 0, queue wait row 1): sum, max, min, values <= min_value
H_SUM = 0
H_MAX = 1
H_MIN = 2
H_ZERO = 3


class LoopFold(NamedTuple):
    """The arrays the loop folds into."""

    ints: np.ndarray
    floats: np.ndarray
    hist_counts: np.ndarray  # (2, buckets): latency, queue wait (ms)
    hist_stats: np.ndarray  # (2, 4): H_SUM, H_MAX, H_MIN, H_ZERO
    batches_by_size: np.ndarray  # records scored in batches of each size
    arrived: np.ndarray  # per tick interval, by event time: scored records, and their latency sum
    latency_sum_s: np.ndarray
    # records arrived and not yet polled: their arrival and poll times binned by the first tick after
    # each (count and moment, as capsim.metrics.intervals.open_area_from_bins takes them)
    wait_open: np.ndarray  # (2, ticks + 1): count, moment
    wait_close: np.ndarray


def allocate(fold: ItemFold, warmup_s: float, slo_s: float | None, max_batch: int, horizon_s: float,
             on: bool, histograms: int = 2) -> LoopFold:  # fmt: skip
    """Empty statistics for a run whose latencies stay below `horizon_s` (its drain limit); rows of
    `hist_counts` beyond the first two are the mode's own distributions (the async queue's)."""
    ints, floats, counts, stats = scalars_and_histograms(warmup_s, slo_s, horizon_s, on, histograms)
    ticks = fold.ticks.size
    return LoopFold(ints, floats, counts, stats, np.zeros(max_batch + 1), np.zeros(ticks), np.zeros(ticks),
                    np.zeros((2, ticks + 1)), np.zeros((2, ticks + 1)))  # fmt: skip


def scalars_and_histograms(warmup_s: float, slo_s: float | None, horizon_s: float, on: bool, histograms: int,
                           ints: int = N_INTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The scalars (`ints` of them: I_*, F_* above) and `histograms` empty histograms (counts
    and H_* stats, for values up to `horizon_s` in ms) of a loop's statistics; the real-time loop's
    too (capsim/serving/dataplane/fold.py)."""
    sketch = LogHistogram()
    scalars = np.zeros(ints, dtype=np.int64)
    scalars[I_ON] = on
    floats = np.zeros(N_FLOATS)
    floats[F_WARMUP_S] = warmup_s
    floats[F_SLO_S] = math.inf if slo_s is None else slo_s
    floats[F_MIN_VALUE] = sketch.min_value
    floats[F_LOG_GAMMA] = math.log(sketch.gamma)
    buckets = int(bucket_index(horizon_s * 1000.0, sketch.min_value, math.log(sketch.gamma))) + 2
    stats = np.zeros((histograms, 4))
    stats[:, H_MAX] = -math.inf
    stats[:, H_MIN] = math.inf
    return scalars, floats, np.zeros((histograms, buckets if on else 1), dtype=np.int64), stats


@njit(cache=True, inline="always")
def _record(counts, stats, row, value, min_value, log_gamma):  # type: ignore[no-untyped-def]
    """One value into histogram `row` (LogHistogram.add for one value)."""
    stats[row, H_SUM] += value
    stats[row, H_MAX] = max(stats[row, H_MAX], value)
    stats[row, H_MIN] = min(stats[row, H_MIN], value)
    if value <= min_value:
        stats[row, H_ZERO] += 1
    else:
        counts[row, int(_bucket(value, min_value, log_gamma))] += 1


@njit(cache=True, inline="always")
def fold_scored(f, ticks, arrival_s, lo, hi, start_s, end_s, size):  # type: ignore[no-untyped-def]
    """Records arrival_s[lo:hi] (non-decreasing: one partition's part of a batch), polled at
    `start_s` in a batch of `size` and scored at `end_s`, folded by ItemFold's rules."""
    # Each array is bound once: numba counts references at every binding, and per record that
    # costs more than the fold itself.
    counts, stats, ints, floats = f.hist_counts, f.hist_stats, f.ints, f.floats
    arrived, latency_sum_s, wait_open, by_size = f.arrived, f.latency_sum_s, f.wait_open, f.batches_by_size
    warmup_s, slo_s = floats[F_WARMUP_S], floats[F_SLO_S]
    min_value, log_gamma = floats[F_MIN_VALUE], floats[F_LOG_GAMMA]
    last = ticks.shape[0] - 1
    k = np.searchsorted(ticks, arrival_s[lo], side="right")  # the first tick after the record
    scored = 0
    within = 0
    sojourn_s = 0.0
    for row in range(lo, hi):
        a = arrival_s[row]
        while k <= last and ticks[k] <= a:
            k += 1
        latency_s = end_s - a
        arrived[min(k, last)] += 1
        latency_sum_s[min(k, last)] += latency_s
        wait_open[0, k] += 1.0
        wait_open[1, k] += a
        if a < warmup_s:
            continue
        scored += 1
        within += latency_s <= slo_s
        sojourn_s += latency_s
        _record(counts, stats, 0, latency_s * 1000.0, min_value, log_gamma)
        _record(counts, stats, 1, max(start_s - a, 0.0) * 1000.0, min_value, log_gamma)
    k = np.searchsorted(ticks, start_s, side="right")
    f.wait_close[0, k] += hi - lo
    f.wait_close[1, k] += (hi - lo) * start_s
    ints[I_COUNT] += scored
    ints[I_WITHIN_SLO] += within
    floats[F_SOJOURN_S] += sojourn_s
    by_size[size] += scored


@njit(cache=True, inline="always")
def add_interval(area, ticks, start, end, weight):  # type: ignore[no-untyped-def]
    """Add `weight` × the length of [start, end) to the tick intervals it overlaps (bin k covers
    [ticks[k-1], ticks[k]); the last bin what lies past the last tick): a level's time integral up
    to tick k is the sum of bins 0..k."""
    k = np.searchsorted(ticks, start, side="right")
    t = start
    while t < end:
        upto = min(end, ticks[k]) if k < ticks.shape[0] else end
        area[k] += weight * (upto - t)
        t = upto
        k += 1


def into(f: LoopFold, fold: ItemFold) -> None:
    """Add what the loop folded to `fold` (which holds the records still unscored at the end)."""
    fold.tally.add_counted(int(f.ints[I_COUNT]), int(f.ints[I_WITHIN_SLO]), float(f.floats[F_SOJOURN_S]),
                           f.batches_by_size, histogram_row(f, 0), histogram_row(f, 1))  # fmt: skip
    fold.arrived += f.arrived
    fold.completed += f.arrived
    fold.latency_sum_s += f.latency_sum_s
    ticks = fold.ticks
    fold.waiting_area += open_area_from_bins(f.wait_open[0], f.wait_open[1], ticks) - open_area_from_bins(
        f.wait_close[0], f.wait_close[1], ticks
    )


class FoldedHistograms(Protocol):
    """What `histogram_row` reads of a loop's statistics (this LoopFold, the real-time RequestFold)."""

    @property
    def ints(self) -> np.ndarray: ...
    @property
    def hist_counts(self) -> np.ndarray: ...
    @property
    def hist_stats(self) -> np.ndarray: ...


def histogram_row(f: FoldedHistograms, row: int) -> LogHistogram:
    """Histogram `row` of the loop's statistics as a LogHistogram (one value per record counted in
    `I_COUNT`), to merge into a distribution's own."""
    part = LogHistogram()
    part.counts = f.hist_counts[row].copy()
    part.total = int(f.ints[I_COUNT])
    part.sum, part.max, part.min = (float(v) for v in f.hist_stats[row, :H_ZERO])
    part.zero_count = int(f.hist_stats[row, H_ZERO])
    return part

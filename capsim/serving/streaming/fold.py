"""Statistics of scored records folded inside the compiled loop, for runs without a request log
(`keep_requests=False`): the same figures `capsim.serving.pull_run.ItemFold` derives from rows —
counts, the latency and queue-wait histograms (the `LogHistogram` bucket rule, compiled), the SLO
count, batch sizes, and per tick interval the arrivals, completions, latency sums and the waiting
area — so that a day of hundreds of millions of events keeps no per-record rows at all.

Records still unscored at the end of the run are folded by `ItemFold` from the topic's rows
(group.py); `into` then adds what the loop folded, so every record is counted once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from capsim.metrics.intervals import open_area_from_bins
from capsim.metrics.loop_stats import F_LOG_GAMMA as F_LOG_GAMMA
from capsim.metrics.loop_stats import F_MIN_VALUE as F_MIN_VALUE
from capsim.metrics.loop_stats import F_SLO_S as F_SLO_S
from capsim.metrics.loop_stats import F_SOJOURN_S as F_SOJOURN_S
from capsim.metrics.loop_stats import F_WARMUP_S as F_WARMUP_S
from capsim.metrics.loop_stats import I_COUNT as I_COUNT
from capsim.metrics.loop_stats import I_ON as I_ON
from capsim.metrics.loop_stats import I_WITHIN_SLO as I_WITHIN_SLO
from capsim.metrics.loop_stats import histogram_row as histogram_row
from capsim.metrics.loop_stats import record_value as _record
from capsim.metrics.loop_stats import scalars_and_histograms
from capsim.serving.pull_run import ItemFold


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

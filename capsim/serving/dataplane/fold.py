"""Finished requests folded into statistics inside the real-time loop, for runs without a request
log (`keep_requests=False`): the figures capsim.metrics.tally.RequestTally and
capsim.metrics.intervals.LevelAreas derive from rows — counts, the latency and queue-wait
histograms (the `LogHistogram` bucket rule, compiled: capsim/metrics/loop_stats.py), the SLO
count, the served sojourn, batch sizes, and per tick interval the arrivals, latency sums and the
integrals of queue length, requests in service and busy executors — so that a day of a hundred
million requests neither writes their rows in full nor folds them in numpy afterwards.

The loop folds each request of a batch as the batch completes (`fold_batch`, called by
`rules.complete`) and marks its row FOLDED (capsim.metrics.request_log): the row then holds only
its arrival time, which the queue and the timeouts read while it waits, and the log drops it with
the finished prefix. Requests that end otherwise — rejected, timed out, cache hits, still in flight
at the end — keep their rows and are folded from them as before (`without_folded`); `into` adds
what the loop folded, so every request counts once. Benchmarks: benchmarks/autoscale_day.py.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from capsim.metrics.intervals import LevelAreas, open_area_from_bins
from capsim.metrics.loop_stats import (
    F_LOG_GAMMA,
    F_MIN_VALUE,
    F_SLO_S,
    F_SOJOURN_S,
    F_WARMUP_S,
    I_COUNT,
    I_ON,
    I_WITHIN_SLO,
    histogram_row,
    record_value,
    scalars_and_histograms,
)
from capsim.metrics.loop_stats import N_INTS as SHARED_N_INTS
from capsim.metrics.request_log import FOLDED
from capsim.metrics.tally import RequestTally
from capsim.serving.dataplane.layout import I_BASE

# The scalars and histograms are laid out as every loop's (capsim/metrics/loop_stats.py), with one
# int more: the tick bin of the latest batch start, where the next bin search begins.
I_TICK = SHARED_N_INTS
N_INTS = I_TICK + 1
# rows of `hist_counts` / `hist_stats` (stats per row: loop_stats.H_*)
R_LATENCY = 0
R_QUEUE_WAIT = 1
LEVELS = LevelAreas.NAMES
"""The levels of `opened` / `closed`: queue length, in service, busy executors, at rows 2i (weight)
and 2i + 1 (weight × time)."""


class RequestFold(NamedTuple):
    """The arrays the loop folds into. Tick bins as capsim.metrics.intervals bins points: bin k
    holds what happened in [ticks[k-1], ticks[k]), the last bin what lies past the last tick."""

    ints: np.ndarray
    floats: np.ndarray
    ticks: np.ndarray
    hist_counts: np.ndarray  # (2, buckets): latency, queue wait (ms)
    hist_stats: np.ndarray  # (2, 4)
    batches_by_size: np.ndarray  # requests served in batches of each size
    arrived: np.ndarray  # per tick interval, by arrival time (completed, all of them), and latency sums
    latency_sum_s: np.ndarray
    # The levels' intervals — queued [arrival, batch start), in service and busy [batch start,
    # service end) — as the weight and the weight × time of their ends, binned by the first tick
    # after each (what open_area_from_bins takes): rows in the order of LEVELS, two each.
    opened: np.ndarray  # (6, ticks + 1)
    closed: np.ndarray


def allocate(ticks: np.ndarray, warmup_s: float, slo_s: float | None, max_batch: int, horizon_s: float,
             on: bool) -> RequestFold:  # fmt: skip
    """Empty statistics for a run sampled at `ticks` whose latencies stay below `horizon_s`; `on`
    False (the request log is kept) leaves them empty and the loop writes every row."""
    ints, floats, counts, stats = scalars_and_histograms(warmup_s, slo_s, horizon_s, on, 2, N_INTS)
    n = ticks.size
    return RequestFold(ints, floats, np.ascontiguousarray(ticks, dtype=np.float64), counts, stats,
                       np.zeros(max_batch + 1), np.zeros(n), np.zeros(n), np.zeros((2 * len(LEVELS), n + 1)),
                       np.zeros((2 * len(LEVELS), n + 1)))  # fmt: skip


@njit(inline="always", error_model="numpy")
def folding(f):  # type: ignore[no-untyped-def]
    """Whether the loop folds finished requests into `f` (no request log) rather than write rows."""
    return f.ints[I_ON] != 0


@njit(inline="always", error_model="numpy")
def tick_after(ticks, t, k):  # type: ignore[no-untyped-def]
    """The index of the first tick after `t` (numpy's searchsorted, side right), found by walking
    from `k`: the times folded one after another are close, so a walk of a step or two beats a
    binary search."""
    while k > 0 and ticks[k - 1] > t:
        k -= 1
    n = ticks.shape[0]
    while k < n and ticks[k] <= t:
        k += 1
    return k


@njit(inline="always", error_model="numpy")
def fold_batch(f, p, log, s, e, started_s, answered_s, overhead_s):  # type: ignore[no-untyped-def]
    """Executor `e` of slot `s` finished its batch, started at `started_s`, answered at
    `answered_s` (`overhead_s` after its service ended): its requests folded by RequestTally's and
    LevelAreas's rules, their rows marked FOLDED."""
    ticks, floats, ints = f.ticks, f.floats, f.ints
    arrival_s, outcome = log.arrival_s, log.outcome
    counts, stats, by_size = f.hist_counts, f.hist_stats, f.batches_by_size
    arrived, latency_sum_s, opened, closed = f.arrived, f.latency_sum_s, f.opened, f.closed
    warmup_s, slo_s = floats[F_WARMUP_S], floats[F_SLO_S]
    served_until_s = answered_s - overhead_s  # (LevelAreas's expression)
    min_value, log_gamma = floats[F_MIN_VALUE], floats[F_LOG_GAMMA]
    size = p.b_size[s, e]
    base = p.ints[I_BASE]
    last = ticks.shape[0] - 1
    k_start = tick_after(ticks, started_s, ints[I_TICK])
    ints[I_TICK] = k_start
    k = k_start
    counted = 0
    within = 0
    sojourn_s = 0.0
    for j in range(size):
        row = p.b_ids[s, e, j] - base
        a = arrival_s[row]
        outcome[row] = FOLDED
        k = tick_after(ticks, a, k)
        latency_s = answered_s - a
        arrived[min(k, last)] += 1
        latency_sum_s[min(k, last)] += latency_s
        opened[0, k] += 1.0
        opened[1, k] += a
        if a < warmup_s:
            continue
        counted += 1
        within += latency_s <= slo_s
        sojourn_s += latency_s - overhead_s
        record_value(counts, stats, R_LATENCY, latency_s * 1000.0, min_value, log_gamma)
        record_value(counts, stats, R_QUEUE_WAIT, max(started_s - a, 0.0) * 1000.0, min_value, log_gamma)
    k_end = tick_after(ticks, served_until_s, k_start)
    closed[0, k_start] += size  # (queued until the batch starts)
    closed[1, k_start] += size * started_s
    opened[2, k_start] += size  # (in service: each request)
    opened[3, k_start] += size * started_s
    closed[2, k_end] += size
    closed[3, k_end] += size * served_until_s
    opened[4, k_start] += 1.0  # (busy: the executor)
    opened[5, k_start] += started_s
    closed[4, k_end] += 1.0
    closed[5, k_end] += served_until_s
    ints[I_COUNT] += counted
    ints[I_WITHIN_SLO] += within
    floats[F_SOJOURN_S] += sojourn_s
    by_size[size] += counted


def into(f: RequestFold, tally: RequestTally, levels: LevelAreas) -> None:
    """Add what the loop folded to `tally` and `levels` (which hold the requests folded from rows)."""
    tally.add_counted(int(f.ints[I_COUNT]), int(f.ints[I_WITHIN_SLO]), float(f.floats[F_SOJOURN_S]), f.batches_by_size,
                      histogram_row(f, R_LATENCY), histogram_row(f, R_QUEUE_WAIT))  # fmt: skip
    levels.arrived += f.arrived
    levels.completed += f.arrived
    levels.latency_sum_s += f.latency_sum_s
    for i, name in enumerate(LEVELS):
        w, wt = 2 * i, 2 * i + 1
        opened = open_area_from_bins(f.opened[w], f.opened[wt], f.ticks)
        levels.areas[name] += opened - open_area_from_bins(f.closed[w], f.closed[wt], f.ticks)

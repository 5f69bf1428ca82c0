"""Finished jobs folded into statistics inside the compiled loop, for runs without a request log
(`keep_requests=False`): the figures `capsim.serving.pull_run.ItemFold` derives from rows (counts,
latency and queue-wait histograms, the SLO count, batch sizes, per tick interval the arrivals,
latency sums and the waiting area) plus the async queue's own two distributions, submit → stored
(`result_ms`) and stored → seen (`poll_delay_ms`). The arrays are the streaming loop's
(`capsim.serving.streaming.fold.LoopFold`, allocated with four histogram rows), and so is the
bucket rule; only the per-job step differs, because each job of a batch is seen at its own poll.

Jobs still unfinished at the end of the run are folded by `ItemFold` from rows (workers.py);
`capsim.serving.streaming.fold.into` then adds what the loop folded, so every job counts once.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from capsim.serving.streaming.fold import (
    F_LOG_GAMMA,
    F_MIN_VALUE,
    F_SLO_S,
    F_SOJOURN_S,
    F_WARMUP_S,
    I_COUNT,
    I_WITHIN_SLO,
    _record,
)

# histogram rows of LoopFold.hist_counts (rows 0 and 1 are latency and queue wait, as in streaming)
R_LATENCY = 0
R_QUEUE_WAIT = 1
R_RESULT = 2  # submit → result stored
R_POLL_DELAY = 3  # result stored → seen by the client's poll
HISTOGRAMS = 4


@njit(cache=True, inline="always")
def fold_job(f, ticks, k, submit_s, start_s, ready_s, seen_s, size):  # type: ignore[no-untyped-def]
    """One finished job folded by ItemFold's rules (and its result and poll delay); `k` is the first
    tick after the previous job of its batch (submit times do not decrease within a batch: the
    queue is FIFO). Returns the first tick after this job, for the next."""
    last = ticks.shape[0] - 1
    while k <= last and ticks[k] <= submit_s:
        k += 1
    latency_s = seen_s - submit_s
    f.arrived[min(k, last)] += 1
    f.latency_sum_s[min(k, last)] += latency_s
    f.wait_open[0, k] += 1.0
    f.wait_open[1, k] += submit_s
    floats = f.floats
    if submit_s < floats[F_WARMUP_S]:
        return k
    counts, stats = f.hist_counts, f.hist_stats
    min_value, log_gamma = floats[F_MIN_VALUE], floats[F_LOG_GAMMA]
    f.ints[I_COUNT] += 1
    f.ints[I_WITHIN_SLO] += latency_s <= floats[F_SLO_S]
    floats[F_SOJOURN_S] += latency_s
    f.batches_by_size[size] += 1
    _record(counts, stats, R_LATENCY, latency_s * 1000.0, min_value, log_gamma)
    _record(counts, stats, R_QUEUE_WAIT, max(start_s - submit_s, 0.0) * 1000.0, min_value, log_gamma)
    _record(counts, stats, R_RESULT, (ready_s - submit_s) * 1000.0, min_value, log_gamma)
    _record(counts, stats, R_POLL_DELAY, (seen_s - ready_s) * 1000.0, min_value, log_gamma)
    return k


@njit(cache=True, inline="always")
def fold_taken(f, ticks, start_s, size):  # type: ignore[no-untyped-def]
    """A batch of `size` jobs left the queue at `start_s`: their waiting intervals close there."""
    k = np.searchsorted(ticks, start_s, side="right")
    f.wait_close[0, k] += size
    f.wait_close[1, k] += size * start_s

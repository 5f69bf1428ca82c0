"""What the compiled loops fold as they go when no request log is kept (`keep_requests=False`): the
layout of their scalars (`I_*` in `ints`, `F_*` in `floats`) and histograms (`counts`, and per
row the `H_*` stats), one value into a histogram row (`record_value`: the `LogHistogram` bucket
rule, compiled), and the row back as a `LogHistogram` (`histogram_row`). The streaming, async and
real-time loops' statistics (capsim/serving/streaming/fold.py, asyncqueue/fold.py,
dataplane/fold.py) share them; `RequestTally.add_counted` merges their counts.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from numba import njit

from capsim.metrics.histogram import LogHistogram, bucket_index

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


def scalars_and_histograms(warmup_s: float, slo_s: float | None, horizon_s: float, on: bool, histograms: int,
                           ints: int = N_INTS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The scalars (`ints` of them: I_*, F_* above) and `histograms` empty histograms (counts
    and H_* stats, for values up to `horizon_s` in ms) of a loop's statistics."""
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
def record_value(counts, stats, row, value, min_value, log_gamma):  # type: ignore[no-untyped-def]
    """One value into histogram `row` (LogHistogram.add for one value)."""
    stats[row, H_SUM] += value
    stats[row, H_MAX] = max(stats[row, H_MAX], value)
    stats[row, H_MIN] = min(stats[row, H_MIN], value)
    if value <= min_value:
        stats[row, H_ZERO] += 1
    else:
        counts[row, int(_bucket(value, min_value, log_gamma))] += 1


class FoldedHistograms(Protocol):
    """What `histogram_row` reads of a loop's statistics (the streaming, async and real-time folds)."""

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

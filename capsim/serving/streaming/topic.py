"""The partitions of a topic: per partition, the event times (and ids) appended so far, and the
group's fetch position and committed offset, as the arrays the compiled loop reads
(capsim/serving/streaming/kernel.py: `visible_end`, `lag`).

Events are appended a chunk ahead of the clock (the arrival process draws them in numpy chunks);
what a consumer can see at time t is only the prefix that has arrived by t, found by search.
Offsets are counted from the start of the run. All partitions share one flat array, each in its own
segment: offset o of partition p is at row o - origin[p], its rows in use are [origin[p] +
committed-or-later, end[p]). Records below a partition's committed offset are dropped when its
segment fills up, and only a segment too small for its lag grows, so memory follows each
partition's own lag (partitions' lags differ: a consumer holding two partitions drains each at half
the speed of one holding one).
"""

from __future__ import annotations

import numpy as np
from numba import njit


class Topic:
    """The flat arrays and, per partition, its segment (start, capacity), origin, end and offsets."""

    def __init__(self, partitions: int, with_ids: bool, capacity: int = 1024) -> None:
        # Ids are the request log's rows: without a log (statistics folded in the loop) none are kept.
        self.with_ids = with_ids
        self.start = np.arange(partitions, dtype=np.int64) * capacity
        self.cap = np.full(partitions, capacity, dtype=np.int64)
        self.times = np.zeros(partitions * capacity)
        self.ids = np.zeros(partitions * capacity if with_ids else 1, dtype=np.int64)
        self.origin = -self.start  # offset o is at row o - origin[p]
        self.end = self.start.copy()  # one past the last row in use
        self.position = np.zeros(partitions, dtype=np.int64)  # next offset to hand to a poll
        self.committed = np.zeros(partitions, dtype=np.int64)  # offsets below are scored and committed

    def log_end(self, p: int) -> int:
        """One past the last offset of partition p appended so far."""
        return int(self.origin[p] + self.end[p])

    def append_chunk(self, keys: np.ndarray, times: np.ndarray, ids: np.ndarray) -> bool:
        """Append a chunk of events (times non-decreasing, after every event there), event i to
        partition keys[i]; True when the arrays were replaced by larger ones (the compiled loop
        must be given the new ones)."""
        counts = np.bincount(keys, minlength=self.start.size)
        short = np.flatnonzero(self.end + counts > self.start + self.cap)
        for p in short:
            self._drop_committed(int(p))
        needed = self.end - self.start + counts
        grow = np.flatnonzero(needed > self.cap)
        if grow.size:
            cap = self.cap.copy()
            for p in grow:
                while cap[p] < needed[p]:
                    cap[p] *= 2
            self._relayout(cap)
        _scatter(self.times, self.ids, self.end, keys, times, ids, self.with_ids)
        return bool(grow.size)

    def _drop_committed(self, p: int) -> None:
        first = int(self.start[p])
        drop = int(self.committed[p] - self.origin[p]) - first  # committed records are never read again
        if drop > 0:
            keep = int(self.end[p]) - first - drop
            self.times[first : first + keep] = self.times[first + drop : first + drop + keep]
            if self.with_ids:
                self.ids[first : first + keep] = self.ids[first + drop : first + drop + keep]
            self.origin[p] += drop
            self.end[p] -= drop

    def _relayout(self, cap: np.ndarray) -> None:
        """New flat arrays with segments of capacities `cap`, each partition's rows moved to its new segment."""
        start = np.concatenate([[0], np.cumsum(cap)[:-1]]).astype(np.int64)
        times = np.zeros(int(cap.sum()))
        ids = np.zeros(int(cap.sum()) if self.with_ids else 1, dtype=np.int64)
        for p in range(start.size):
            old, new, used = int(self.start[p]), int(start[p]), int(self.end[p] - self.start[p])
            times[new : new + used] = self.times[old : old + used]
            if self.with_ids:
                ids[new : new + used] = self.ids[old : old + used]
        shift = start - self.start
        self.origin -= shift
        self.end += shift
        self.start, self.cap, self.times, self.ids = start, cap, times, ids


@njit(cache=True)
def _scatter(times, ids, end, keys, chunk_times, chunk_ids, with_ids):  # type: ignore[no-untyped-def]
    """Event i to the end of partition keys[i], in order (one pass: no sort by key)."""
    for i in range(keys.shape[0]):
        p = keys[i]
        row = end[p]
        times[row] = chunk_times[i]
        if with_ids:
            ids[row] = chunk_ids[i]
        end[p] = row + 1

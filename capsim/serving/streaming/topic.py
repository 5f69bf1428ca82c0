"""The partitions of a topic: per partition, the event times and ids appended so far, and the
group's fetch position and committed offset, as the arrays the compiled loop reads
(capsim/serving/streaming/kernel.py: `visible_end`, `lag`).

Events are appended a chunk ahead of the clock (the arrival process draws them in numpy chunks);
what a consumer can see at time t is only the prefix that has arrived by t, found by binary search.
Offsets are counted from the start of the run; records below a partition's committed offset are
dropped when its rows fill up, so memory follows the lag, not the run length.
"""

from __future__ import annotations

import numpy as np
from numba import njit


class Topic:
    """Row r of partition p (r < size[p]) holds offset base[p] + r: its arrival time and event id."""

    def __init__(self, partitions: int, with_ids: bool, capacity: int = 1024) -> None:
        # Ids are the request log's rows: without a log (statistics folded in the loop) none are kept.
        self.with_ids = with_ids
        self.times = np.zeros((partitions, capacity))
        self.ids = np.zeros((partitions, capacity if with_ids else 1), dtype=np.int64)
        self.base = np.zeros(partitions, dtype=np.int64)
        self.size = np.zeros(partitions, dtype=np.int64)
        self.position = np.zeros(partitions, dtype=np.int64)
        self.committed = np.zeros(partitions, dtype=np.int64)

    def append_chunk(self, keys: np.ndarray, times: np.ndarray, ids: np.ndarray) -> bool:
        """Append a chunk of events (times non-decreasing, after every event there), event i to
        partition keys[i]; True when the arrays were replaced by larger ones (the compiled loop
        must be given the new ones)."""
        counts = np.bincount(keys, minlength=self.size.size)
        grown = False
        for p in np.flatnonzero(self.size + counts > self.times.shape[1]):
            self._drop_committed(int(p))
        needed = int((self.size + counts).max())
        if needed > self.times.shape[1]:
            self._grow(needed)
            grown = True
        _scatter(self.times, self.ids, self.size, keys, times, ids, self.with_ids)
        return grown

    def _drop_committed(self, p: int) -> None:
        drop = int(self.committed[p] - self.base[p])  # committed records are never read again
        if drop > 0:
            keep = int(self.size[p]) - drop
            self.times[p, :keep] = self.times[p, drop : drop + keep]
            if self.with_ids:
                self.ids[p, :keep] = self.ids[p, drop : drop + keep]
            self.base[p] += drop
            self.size[p] = keep

    def _grow(self, needed: int) -> None:
        capacity = self.times.shape[1]
        while capacity < needed:
            capacity *= 2
        times = np.zeros((self.times.shape[0], capacity))
        times[:, : self.times.shape[1]] = self.times
        self.times = times
        if self.with_ids:
            ids = np.zeros((self.times.shape[0], capacity), dtype=np.int64)
            ids[:, : self.ids.shape[1]] = self.ids
            self.ids = ids


@njit(cache=True)
def _scatter(times2d, ids2d, size, keys, times, ids, with_ids):  # type: ignore[no-untyped-def]
    """Event i to the end of partition keys[i], in order (one pass: no sort by key)."""
    for i in range(keys.shape[0]):
        p = keys[i]
        row = size[p]
        times2d[p, row] = times[i]
        if with_ids:
            ids2d[p, row] = ids[i]
        size[p] = row + 1

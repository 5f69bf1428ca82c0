"""The partitions of a topic: per partition, the event times and ids appended so far, and the
group's fetch position and committed offset.

Events are appended a chunk ahead of the clock (the arrival process draws them in numpy chunks);
what a consumer can see at time t is only the prefix that has arrived by t, found by binary search.
Offsets are counted from the start of the run; records below every offset still needed are dropped
as the buffers grow, so memory follows the lag, not the run length.
"""

from __future__ import annotations

import numpy as np


class Partition:
    """One partition's log (the part of it still needed) and the group's offsets in it."""

    __slots__ = ("base", "committed", "ids", "position", "size", "times")

    def __init__(self, capacity: int = 1024) -> None:
        self.times = np.empty(capacity)  # arrival time of offset base + i
        self.ids = np.empty(capacity, dtype=np.int64)  # the event's id in the request log
        self.base = 0  # offset of buffer row 0
        self.size = 0  # rows in use
        self.position = 0  # next offset to hand to a poll
        self.committed = 0  # offsets below this are scored and committed

    @property
    def log_end(self) -> int:
        """One past the last offset appended (arrived or due within the current chunk)."""
        return self.base + self.size

    def append(self, times: np.ndarray, ids: np.ndarray) -> None:
        """Append events (times non-decreasing, after every event already there)."""
        n = times.size
        if self.size + n > self.times.size:
            self._make_room(n)
        self.times[self.size : self.size + n] = times
        self.ids[self.size : self.size + n] = ids
        self.size += n

    def _make_room(self, needed: int) -> None:
        drop = self.committed - self.base  # committed records are never read again
        if drop > 0:
            keep = self.size - drop
            self.times[:keep] = self.times[drop : self.size]
            self.ids[:keep] = self.ids[drop : self.size]
            self.base += drop
            self.size = keep
        capacity = self.times.size
        while self.size + needed > capacity:
            capacity *= 2
        if capacity != self.times.size:
            times, ids = np.empty(capacity), np.empty(capacity, dtype=np.int64)
            times[: self.size] = self.times[: self.size]
            ids[: self.size] = self.ids[: self.size]
            self.times, self.ids = times, ids

    def visible_end(self, now_s: float) -> int:
        """One past the last offset that has arrived by `now_s`."""
        lo = self.position - self.base
        # The array method: numpy's module-level searchsorted wrapper costs more than the search.
        return self.position + int(self.times[lo : self.size].searchsorted(now_s, side="right"))

    def lag(self, now_s: float) -> int:
        """Arrived records not yet committed (Kafka's consumer lag at `now_s`)."""
        lo = self.committed - self.base
        return int(self.times[lo : self.size].searchsorted(now_s, side="right"))

    def next_s(self) -> float:
        """Arrival time of the record at the fetch position; inf if it is not appended yet."""
        row = self.position - self.base
        return float(self.times[row]) if row < self.size else float("inf")

    def upcoming_s(self, count: int) -> np.ndarray:
        """Arrival times of the next `count` records from the fetch position (fewer if not appended yet)."""
        lo = self.position - self.base
        return self.times[lo : min(lo + count, self.size)]

    def take(self, end: int) -> np.ndarray:
        """Advance the fetch position to `end`; the ids of the records handed out."""
        ids = self.ids[self.position - self.base : end - self.base].copy()
        self.position = end
        return ids

"""Columnar per-request records: preallocated numpy columns grown by doubling, one row per request.

Request ids are global and increase with arrival time; row = id - `base`. In bounded-memory mode the
log periodically hands its finished prefix to a consumer (which folds it into histograms) and keeps
only the rows still in flight, so memory stays proportional to the requests in the system.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

import numpy as np

IN_FLIGHT = 0
COMPLETED = 1
REJECTED = 2
TIMED_OUT = 3
OUTCOME_NAMES = {IN_FLIGHT: "in_flight", COMPLETED: "completed", REJECTED: "rejected", TIMED_OUT: "timed_out"}
FOLDED = 4
"""Bounded-memory mode only: a completed request whose statistics the compiled loop folded as it
finished (capsim/serving/dataplane/fold.py); its row holds only its arrival time."""

COLUMNS: dict[str, tuple[type, float | int | bool]] = {
    "arrival_s": (np.float64, np.nan),
    "start_s": (np.float64, np.nan),  # batch start (service begins); NaN if never served
    "end_s": (np.float64, np.nan),  # response delivered / rejected / timed out
    "replica": (np.int32, -1),
    "batch_size": (np.int32, 0),
    "outcome": (np.int8, IN_FLIGHT),
    "cache_hit": (np.bool_, False),
    "request_size": (np.float64, 1.0),  # workload.size, in the workload's unit (1 without sizes)
}

Columns = dict[str, np.ndarray]
Flush = Callable[[Columns], None]


class BatchBook:
    """One replica's batches not yet spread onto rows, as three parallel lists (appending to
    them is the cheapest record a batch can leave on the hot path): the request ids of each batch,
    its start time and its end time (NaN for a batch still in service at the end of the run)."""

    __slots__ = ("end_s", "ids", "replica", "start_s")

    APPLY_AT = 512

    def __init__(self, replica: int) -> None:
        self.replica = replica
        self.ids: list[list[int]] = []
        self.start_s: list[float] = []
        self.end_s: list[float] = []


class RequestLog:
    """The per-request columns of one replication."""

    def __init__(self, capacity: int = 1 << 16, flush: Flush | None = None) -> None:
        self.base = 0  # id of row 0
        self.size = 0  # rows in use
        self._flush = flush
        self.columns: Columns = {}
        self._allocate(capacity)
        # Batches are booked as one entry each in their replica's BatchBook and spread onto their
        # requests' rows in bulk, keeping per-request numpy stores off the simulation's hot path.
        self._books: list[BatchBook] = []
        # The latest chunk of arrival times as Python floats, and the id of its first request.
        self.recent_s: list[float] = []
        self.recent_first_id = 0

    def batch_book(self, replica: int) -> BatchBook:
        """A new book in which `replica` records its batches (spread onto rows when the log needs them)."""
        book = BatchBook(replica)
        self._books.append(book)
        return book

    def _apply_batches(self) -> None:
        for book in self._books:
            if book.ids:
                self.apply_book(book)

    def apply_book(self, book: BatchBook) -> None:
        """Spread a book's batches onto their rows now and empty it. Replicas call this when a
        book reaches `BatchBook.APPLY_AT` batches: spread while its lists are still in the CPU's
        cache, it costs a fraction of what it costs tens of thousands of batches later."""
        ids, count = book.ids, len(book.ids)
        sizes = np.fromiter(map(len, ids), dtype=np.int64, count=count)
        total = int(sizes.sum())
        rows = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=total) - self.base
        start_s = np.fromiter(book.start_s, dtype=np.float64, count=count)
        end_s = np.fromiter(book.end_s, dtype=np.float64, count=count)
        if total != count:  # batches of more than one request: one value per request
            start_s, end_s = np.repeat(start_s, sizes), np.repeat(end_s, sizes)
            sizes = np.repeat(sizes, sizes)
        self.start_s[rows] = start_s
        self.end_s[rows] = end_s
        self.batch_size[rows] = sizes
        self.replica[rows] = book.replica
        self.outcome[rows] = np.where(np.isfinite(end_s), COMPLETED, IN_FLIGHT)
        # Cleared in place: replicas hold the lists' bound `append` methods.
        ids.clear()
        book.start_s.clear()
        book.end_s.clear()

    def _allocate(self, capacity: int) -> None:
        fresh: Columns = {name: np.full(capacity, fill, dtype=dtype) for name, (dtype, fill) in COLUMNS.items()}
        for name, old in self.columns.items():
            fresh[name][: self.size] = old[: self.size]
        self.columns = fresh
        # Direct references for the hot path (refreshed whenever the arrays are replaced).
        self.arrival_s = fresh["arrival_s"]
        self.start_s = fresh["start_s"]
        self.end_s = fresh["end_s"]
        self.replica = fresh["replica"]
        self.batch_size = fresh["batch_size"]
        self.outcome = fresh["outcome"]
        self.cache_hit = fresh["cache_hit"]
        self.request_size = fresh["request_size"]

    @property
    def capacity(self) -> int:
        """Rows allocated."""
        return self.arrival_s.size

    def append_arrivals(self, arrival_s: np.ndarray, keep_recent: bool = True) -> int:
        """Add rows for a chunk of arrivals; returns the id of the first. `keep_recent=False`
        skips the Python-float copy that `arrival_time_s` serves (the compiled engine reads the
        column itself)."""
        n = arrival_s.size
        if self.size + n > self.capacity:
            self._make_room(n)
        self.arrival_s[self.size : self.size + n] = arrival_s
        first_id = self.base + self.size
        self.size += n
        if keep_recent:
            self.recent_first_id = first_id
            self.recent_s = arrival_s.tolist()
        else:
            self.recent_first_id = first_id + n  # every id so far is read from the column
            self.recent_s = []
        return first_id

    def arrival_time_s(self, request_id: int) -> float:
        """A request's arrival time as a Python float (from the latest chunk's list when it is
        there: a numpy scalar lookup costs several times a list index on the hot path)."""
        k = request_id - self.recent_first_id
        if k >= 0:
            return self.recent_s[k]
        return self.arrival_s[request_id - self.base].item()

    def _make_room(self, needed: int) -> None:
        self._apply_batches()
        if self._flush is not None:
            unfinished = np.flatnonzero(self.outcome[: self.size] == IN_FLIGHT)
            done = int(unfinished[0]) if unfinished.size else self.size
            if done > 0:
                self._flush({name: col[:done] for name, col in self.columns.items()})
                keep = self.size - done
                for name, col in self.columns.items():
                    col[:keep] = col[done : self.size]
                    col[keep : self.size] = COLUMNS[name][1]
                self.base += done
                self.size = keep
        capacity = self.capacity
        while self.size + needed > capacity:
            capacity *= 2
        if capacity != self.capacity:
            self._allocate(capacity)

    def flush_all(self) -> None:
        """Hand every remaining row to the consumer (end of run, bounded-memory mode)."""
        self._apply_batches()
        if self._flush is not None and self.size:
            self._flush({name: col[: self.size] for name, col in self.columns.items()})
            self.base += self.size
            self.size = 0

    def detach(self) -> Columns:
        """The rows in use as compact columns of their own, and the log emptied: each column is copied
        and the log's larger array released before the next, so the copy never holds a second
        whole log (a 4-hour run keeping its requests peaked at ~1.1 GB copying them all at once)."""
        self._apply_batches()
        size, kept = self.size, {}
        for name in list(self.columns):
            kept[name] = self.columns[name][:size].copy()
            self.columns[name] = kept[name][:0]
            setattr(self, name, self.columns[name])  # the hot-path reference would keep the array alive
        self.base += size
        self.size = 0
        return kept

    def view(self) -> Columns:
        """The rows in use, column by column (no copy)."""
        self._apply_batches()
        return {name: col[: self.size] for name, col in self.columns.items()}


def without_folded(cols: Columns) -> Columns:
    """The rows of a block that still need folding: all but those the compiled loop folded (FOLDED)."""
    outcome = cols["outcome"]
    folded = outcome == FOLDED
    if not folded.any():
        return cols
    keep = np.flatnonzero(~folded)
    return {name: col[keep] for name, col in cols.items()}

"""Time-weighted levels computed from per-request intervals instead of being tracked event by event.

The time integral of the queue length equals the total time requests spent queued; the integral of
busy executors equals the total busy time of batches. So the levels need no bookkeeping on the
simulation's hot path: each request contributes its intervals ([arrival, start) queued,
[start, end) in service) when its row is folded in, and the integrals up to fixed sample times are
exact, vectorized sums:

    area(t) = sum_i w_i * |[a_i, b_i) ∩ [0, t)| = sum_{a_i < t} w_i (t - a_i) - sum_{b_i < t} w_i (t - b_i)
"""

from __future__ import annotations

import numpy as np

from capsim.metrics.request_log import COMPLETED, IN_FLIGHT, TIMED_OUT, Columns


def _open_areas(points: np.ndarray, weight_sets: list[np.ndarray], ticks: np.ndarray) -> list[np.ndarray]:
    """For each set of weights w: sum over points p < t of w (t - p), for every tick t.

    No sort: a point counts from the first tick after it on, so binning the points by that tick
    (a binary search among the ~1,000 ticks) and summing w and w·p per bin gives every tick's sum
    as t × (cumulative w) − (cumulative w·p). Points at or past the last tick (or infinite: an
    interval still open) fall in a bin past the end and count for no tick."""
    first_tick = np.searchsorted(ticks, points, side="right")
    finite = np.isfinite(points)
    if not finite.all():
        first_tick = np.where(finite, first_tick, ticks.size)
        points = np.where(finite, points, 0.0)
    bins = ticks.size + 1
    areas = []
    for weights in weight_sets:
        count = np.bincount(first_tick, weights=weights, minlength=bins)
        moment = np.bincount(first_tick, weights=weights * points, minlength=bins)
        areas.append(open_area_from_bins(count, moment, ticks))
    return areas


def open_area_from_bins(count: np.ndarray, moment: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """sum over points p < t of w (t - p), for every tick t, from the points binned by the first
    tick after them: per bin the sum of w (`count`) and of w·p (`moment`); a bin past the last tick
    counts for none. The streaming loop bins its points as they happen (serving/streaming/fold.py)."""
    return ticks * np.cumsum(count[: ticks.size]) - np.cumsum(moment[: ticks.size])


def _open_area(points: np.ndarray, weights: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """sum over points p < t of w (t - p), for every tick t."""
    return _open_areas(points, [weights], ticks)[0]


def interval_area(starts: np.ndarray, ends: np.ndarray, weights: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """For each tick t, the weighted total length of the intervals [start, end) inside [0, t).
    `ends` may be +inf (still open at the end of the run)."""
    return _open_area(starts, weights, ticks) - _open_area(ends, weights, ticks)


class LevelAreas:
    """Integrals, up to each sample tick, of queue length, requests in service and busy executors."""

    NAMES = ("queue_length", "in_service", "busy_executors")

    def __init__(self, ticks: np.ndarray, overhead_s: float) -> None:
        self.ticks = ticks
        self.overhead_s = overhead_s
        self.areas = {name: np.zeros(ticks.size) for name in self.NAMES}
        # Per sample interval, by arrival time: requests arrived, completed, and their latency sum.
        self.arrived = np.zeros(ticks.size)
        self.completed = np.zeros(ticks.size)
        self.latency_sum_s = np.zeros(ticks.size)

    def add(self, cols: Columns) -> None:
        """Fold in a block of rows (finished ones, or at the end of the run any)."""
        arrival, start, end = cols["arrival_s"], cols["start_s"], cols["end_s"]
        outcome, cache_hit = cols["outcome"], cols["cache_hit"]
        bins = np.minimum(np.searchsorted(self.ticks, arrival, side="right"), self.ticks.size - 1)
        done = outcome == COMPLETED
        self.arrived += np.bincount(bins, minlength=self.ticks.size)
        self.completed += np.bincount(bins[done], minlength=self.ticks.size)
        self.latency_sum_s += np.bincount(bins[done], weights=(end - arrival)[done], minlength=self.ticks.size)
        started = np.isfinite(start) & ~cache_hit
        # Queued: until service starts; until the deadline if timed out; still queued if neither.
        queued_until = np.where(started, start, np.where(outcome == TIMED_OUT, end, np.inf))
        waiting = started | (outcome == TIMED_OUT) | ((outcome == IN_FLIGHT) & ~started)
        ones = np.ones(int(waiting.sum()))
        self.areas["queue_length"] += interval_area(arrival[waiting], queued_until[waiting], ones, self.ticks)
        served_until = np.where(outcome[started] == COMPLETED, end[started] - self.overhead_s, np.inf)
        ones = np.ones(served_until.size)
        # A batch of k requests keeps one executor busy: each request carries 1/k of it.
        share = 1.0 / cols["batch_size"][started]
        # Requests in service and busy executors share their intervals: each end is sorted once.
        weight_sets = [ones, share]
        opened = _open_areas(start[started], weight_sets, self.ticks)
        closed = _open_areas(served_until, weight_sets, self.ticks)
        self.areas["in_service"] += opened[0] - closed[0]
        self.areas["busy_executors"] += opened[1] - closed[1]

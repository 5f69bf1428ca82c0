"""White-box fit of `serving.stalls`: rare spells in which the whole server process runs slow.

What is detected (per load point, per executor, batches in start order): a batch's *cycle* is its
busy time plus, when the next batch's oldest request was already queued as it ended, the gap until
the next batch started (a dispatch delay: the simulator would have started it at once; idle time
with nothing queued is not slowness). A batch is slow when its cycle is at least `SLOW_FACTOR` × the
median busy time of its size at that point. A stall is a run of at least `MIN_BATCHES` consecutive
slow batches spanning at least `MIN_STALL_MS` (first start to last end) — single slow batches are
the batch-time distribution's own tail, which the profile keeps.

What is fitted, pooled over the fit points:

- `rate_per_s`: stalls found / measured seconds (the points' measured intervals, executors summed);
- `duration_ms`: the spans, as `DURATION_QUANTILES` quantiles (a fixed value from fewer than
  `MIN_STALLS_FOR_QUANTILES` stalls: their median). A span runs from the first slow batch's start
  to the last one's end, so it misses the stall's beginning before that batch and its end after it;
- `slowdown`: Σ cycles / Σ size medians over every stall's batches — busy time and dispatch gaps
  together, because the simulator does not hold dispatch during a stall (capsim/serving/stalls.py).

`without_stalls` gives the points back with the stalls' batches removed from their batch logs: the
profile is then fitted from the batches outside stalls, so that the replay does not count the
stalls' slow batches twice (once in the profile's tail, once in the stall process).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capsim.calibration.runfolder import LoadPoint
from capsim.calibration.whitebox import batches_inside

SLOW_FACTOR = 2.0  # a cycle this many times its size's median is slow
MIN_BATCHES = 2
MIN_STALL_MS = 20.0
MIN_SIZE_BATCHES = 5  # a size seen fewer times has no reliable median: its batches are never slow
DURATION_QUANTILES = 11  # every 10th percentile
MIN_STALLS_FOR_QUANTILES = 5


@dataclass(frozen=True)
class Stall:
    """One detected stall: its span, how much slower than normal it ran, and its batches' ids."""

    start_s: float
    end_s: float
    cycles_s: float
    normal_s: float
    batch_ids: tuple[int, ...]

    @property
    def duration_ms(self) -> float:
        """First slow batch's start to last slow batch's end."""
        return (self.end_s - self.start_s) * 1000.0


@dataclass(frozen=True)
class StallEstimate:
    """The fitted `serving.stalls` and what it was measured from."""

    rate_per_s: float
    duration_ms: float | list[float]
    slowdown: float
    stalls: int
    measured_s: float
    per_point: dict[str, dict[str, float | int | None]]

    def spec(self) -> dict[str, object]:
        """The `serving.stalls` mapping."""
        return {"rate_per_s": self.rate_per_s, "duration_ms": self.duration_ms, "slowdown": self.slowdown}

    def describe(self) -> str:
        """One line for the console."""
        d = self.duration_ms
        durations = (f"{d:.1f} ms" if isinstance(d, float)
                     else f"median {d[len(d) // 2]:.1f} ms (p10 {d[1]:.1f}, p90 {d[-2]:.1f})")  # fmt: skip
        return (f"{self.stalls} stalls in {self.measured_s:.0f} s: {self.rate_per_s:.3f}/s, {durations}, "
                f"{self.slowdown:.2f}x slower")  # fmt: skip

    def as_dict(self) -> dict[str, object]:
        """For provenance."""
        return {**self.spec(), "stalls": self.stalls, "measured_s": self.measured_s, "per_point": self.per_point,
                "detection": {"slow_factor": SLOW_FACTOR, "min_batches": MIN_BATCHES,
                              "min_stall_ms": MIN_STALL_MS}}  # fmt: skip


def _executor_stalls(batches: pd.DataFrame) -> list[Stall]:
    ordered = batches.sort_values("start_s")
    start = ordered["start_s"].to_numpy(dtype=float)
    end = ordered["end_s"].to_numpy(dtype=float)
    sizes = ordered["size"].to_numpy(dtype=np.int64)
    ids = ordered["batch_id"].to_numpy(dtype=np.int64) if "batch_id" in ordered.columns else np.arange(start.size)
    busy = end - start
    median = np.full(start.size, np.nan)
    for size in np.unique(sizes):
        same = sizes == size
        if same.sum() >= MIN_SIZE_BATCHES:
            median[same] = np.median(busy[same])
    gap = np.zeros(start.size)
    if "arrival_s" in ordered.columns and start.size > 1:
        oldest = np.array([min(a) if len(a) else np.nan for a in ordered["arrival_s"]], dtype=float)
        queued = oldest[1:] < end[:-1]
        gap[:-1] = np.where(queued, np.maximum(start[1:] - end[:-1], 0.0), 0.0)
    cycle = busy + gap
    with np.errstate(invalid="ignore"):
        slow = cycle >= SLOW_FACTOR * median  # (NaN median: never slow)
    stalls: list[Stall] = []
    i = 0
    while i < slow.size:
        if not slow[i]:
            i += 1
            continue
        j = i
        while j < slow.size and slow[j]:
            j += 1
        span_ms = (end[j - 1] - start[i]) * 1000.0
        if j - i >= MIN_BATCHES and span_ms >= MIN_STALL_MS:
            stalls.append(Stall(float(start[i]), float(end[j - 1]), float(cycle[i:j].sum()),
                                float(median[i:j].sum()), tuple(int(x) for x in ids[i:j])))  # fmt: skip
        i = j
    return stalls


def detect_stalls(point: LoadPoint) -> list[Stall]:
    """The stalls in `point`'s batch log (empty without one)."""
    inside = batches_inside(point)
    if inside is None or inside.empty:
        return []
    if "instance" not in inside.columns:
        return _executor_stalls(inside)
    return [s for _, group in inside.groupby("instance") for s in _executor_stalls(group)]


def _executors(point: LoadPoint) -> int:
    return point.server.instances if point.server is not None else 1


def fit_stalls(points: list[LoadPoint]) -> StallEstimate | None:
    """The stall process of the fit points' batch logs; None when no stall was found."""
    found: list[Stall] = []
    measured_s = 0.0
    per_point: dict[str, dict[str, float | int | None]] = {}
    for point in points:
        own = detect_stalls(point)
        lo, hi = point.window_s
        seconds = (hi - lo) * _executors(point)
        measured_s += seconds
        found += own
        per_point[point.label] = {
            "stalls": len(own), "rate_per_s": len(own) / seconds if seconds > 0 else None,
            "duration_ms_median": float(np.median([s.duration_ms for s in own])) if own else None,
            "slowdown": sum(s.cycles_s for s in own) / sum(s.normal_s for s in own) if own else None,
        }  # fmt: skip
    if not found or measured_s <= 0:
        return None
    durations = np.array([s.duration_ms for s in found])
    duration: float | list[float]
    if durations.size >= MIN_STALLS_FOR_QUANTILES:
        duration = [round(float(q), 4) for q in np.percentile(durations, np.linspace(0, 100, DURATION_QUANTILES))]
    else:
        duration = round(float(np.median(durations)), 4)
    slowdown = max(1.0, sum(s.cycles_s for s in found) / sum(s.normal_s for s in found))
    return StallEstimate(rate_per_s=len(found) / measured_s, duration_ms=duration, slowdown=round(slowdown, 4),
                         stalls=len(found), measured_s=measured_s, per_point=per_point)  # fmt: skip


def without_stalls(points: list[LoadPoint]) -> list[LoadPoint]:
    """`points` with the detected stalls' batches taken out of their batch logs (for the profile fit)."""
    out = []
    for point in points:
        stalls = detect_stalls(point)
        if not stalls or point.batches is None or "batch_id" not in point.batches.columns:
            out.append(point)
            continue
        drop = {i for s in stalls for i in s.batch_ids}
        kept = point.batches[~point.batches["batch_id"].isin(drop)]
        out.append(dataclasses.replace(point, batches=kept))
    return out

"""White-box calibration: the service-time profile straight from the reference server's batch log.

The server logs every batch it ran (`batches.parquet`: size, start, end), so the service time of a
batch of k is observed directly: `end_s − start_s`, the executor's busy time — exactly what the
simulator's service-time model draws. Measured under real load, these times include whatever the
load does to the model (contention with the HTTP loop and the load generator for the same cores),
which an isolated `capsim profile` does not see.

The fixed overhead outside the batcher (network, HTTP parsing, JSON) is what the client saw minus
what the server accounted for: `latency_ms − X-Queue-Ms − X-Compute-Ms`, per request; its median at
the lightest fit load becomes the replay's `overhead_ms` (see `overhead_estimate`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from capsim.calibration.runfolder import LoadPoint
from capsim.errors import CapsimInputError
from capsim.servicetime import Profile

MIN_BATCHES_PER_SIZE = 5  # fewer observations of a size say too little about its distribution
_SAME_INSTANT_S = 1e-4  # a batch starting within this of the previous one's end followed it directly


@dataclass(frozen=True)
class OverheadEstimate:
    """The per-request time outside the server's queue and executor, from the client's view: the
    median at the lightest fit load (the constant the replay adds), and its spread there and at
    every fit point (how much of it grows with load: queueing in the server's front end)."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    requests: int
    lightest: str
    per_point: dict[str, dict[str, float]]

    def as_dict(self) -> dict[str, object]:
        """For provenance."""
        return {"median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "requests": self.requests,
                "from_point": self.lightest, "per_point": self.per_point}  # fmt: skip


def batches_inside(point: LoadPoint) -> pd.DataFrame | None:
    """The batches of `point` that started inside its measured interval and did not fail (None: no
    batch log)."""
    batches = point.batches
    if batches is None:
        return None
    if "error" in batches.columns:  # a batch the model failed on says nothing about its speed
        batches = batches[batches["error"].isna()]
    lo, hi = point.window_s
    start = batches["start_s"].to_numpy(dtype=float)
    return batches[(start >= lo) & (start < hi)]


def batch_service_samples_ms(points: list[LoadPoint]) -> dict[int, np.ndarray]:
    """Service times (ms) of the batches that started inside each point's measured interval, by size."""
    by_size: dict[int, list[np.ndarray]] = {}
    for point in points:
        inside = batches_inside(point)
        if inside is None:
            raise CapsimInputError(
                "white-box calibration needs the reference server's batch log (batches.parquet), which this run "
                "does not have; use --method black-box for other targets", source=str(point.run_dir))
        start = inside["start_s"].to_numpy(dtype=float)
        sizes = inside["size"].to_numpy(dtype=np.int64)
        busy_ms = (inside["end_s"].to_numpy(dtype=float) - start) * 1000.0
        for size in np.unique(sizes):
            by_size.setdefault(int(size), []).append(busy_ms[sizes == size])
    return {size: np.concatenate(parts) for size, parts in sorted(by_size.items())}


def outside_server_ms(point: LoadPoint) -> np.ndarray:
    """Per completed measured request: client latency − X-Queue-Ms − X-Compute-Ms (empty when the
    server sends no timing headers)."""
    rows = point.requests
    if not {"server_queue_ms", "server_compute_ms"} <= set(rows.columns):
        return np.empty(0)
    ok = point.measured_mask() & (rows["status"].to_numpy() // 100 == 2)
    outside = (rows["latency_ms"] - rows["server_queue_ms"] - rows["server_compute_ms"]).to_numpy(dtype=float)[ok]
    return outside[np.isfinite(outside)]


def overhead_estimate(points: list[LoadPoint]) -> OverheadEstimate:
    """Client latency minus the server's queue wait and compute time, per completed measured request.

    The simulator's overhead is a constant: the part of this time that does not depend on load
    (network, parsing, serialization). Under load the reference server's front end — one event loop
    that parses every request and runs the batching timer — queues too, and that share grows with
    the rate; so the constant is taken from the lightest fit load (lowest offered rate), where that
    queueing is least, and the other points' medians are recorded beside it."""
    measured = [(point, outside_server_ms(point)) for point in points]
    measured = [(point, values) for point, values in measured if values.size]
    if not measured:
        raise CapsimInputError("no request carries the server's X-Queue-Ms / X-Compute-Ms times, so the overhead "
                               "outside the server cannot be separated; give --overhead-ms or use --method black-box",
                               source=str(points[0].run_dir / "requests.parquet"))
    per_point = {point.label: {"rate_rps": float(point.rate_rps or 0.0),
                               **dict(zip(("p10_ms", "median_ms", "p90_ms", "p99_ms"),
                                          map(float, np.percentile(values, [10, 50, 90, 99])), strict=True))}
                 for point, values in measured}  # fmt: skip
    lightest, values = min(measured, key=lambda pv: (pv[0].rate_rps or 0.0, pv[0].label))
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    # Clock resolution can make a few differences slightly negative; the overhead itself is not.
    return OverheadEstimate(max(float(median), 0.0), float(p10), float(p90), int(values.size), lightest.label,
                            per_point)


def window_lateness_ms(points: list[LoadPoint]) -> dict[str, float | int] | None:
    """How late the server's batching window closes: for batches that left the queue below the
    maximum size (the window, not a full batch, released them), the oldest request's wait minus
    `max_wait_ms`. A server's timer fires late by its event loop's latency, which shows up as extra
    queue wait; the simulator closes the window on time unless the front end's loop is given a
    lateness (`serving.frontend.window_late_quantiles_ms`, fitted by lateness_fit.py from
    `window_lateness_samples_ms`)."""
    values = window_lateness_samples_ms(points)
    if values.size == 0:
        return None
    p50, p90 = np.percentile(values, [50, 90])
    return {"median_ms": float(p50), "p90_ms": float(p90), "batches": int(values.size)}


def window_lateness_samples_ms(points: list[LoadPoint]) -> np.ndarray:
    """Per batch released by the window's timer (below the maximum size, executor idle before it)
    inside the measured intervals: the oldest request's wait minus `max_wait_ms` (ms, ≥ 0)."""
    parts = []
    for point in points:
        server = point.server
        batches = point.batches
        if server is None or batches is None or server.max_wait_ms <= 0 or "queue_wait_ms" not in batches.columns:
            continue
        lo, hi = point.window_s
        ordered = batches.sort_values(["instance", "start_s"]) if "instance" in batches.columns else \
            batches.sort_values("start_s")
        start = ordered["start_s"].to_numpy(dtype=float)
        previous_end = ordered.groupby("instance")["end_s"].shift(1).to_numpy(dtype=float) \
            if "instance" in ordered.columns else ordered["end_s"].shift(1).to_numpy(dtype=float)
        # Only batches whose executor had been idle: one that starts the moment the previous batch
        # ends was released by the executor coming free, not by the window's timer.
        idle_before = ~(start - previous_end < _SAME_INSTANT_S)
        by_window = (ordered["size"].to_numpy() < server.max_batch_size) & idle_before & (start >= lo) & (start < hi)
        oldest_ms = np.array([max(w) if len(w) else np.nan for w in ordered["queue_wait_ms"][by_window]], dtype=float)
        late = oldest_ms - server.max_wait_ms
        parts.append(late[np.isfinite(late) & (late >= 0)])
    return np.concatenate(parts) if parts else np.empty(0)


def fit_white_box(points: list[LoadPoint], **metadata: object) -> tuple[Profile, dict[str, object]]:
    """A profile from the batch log of `points`, and what was dropped (sizes seen too rarely)."""
    samples = batch_service_samples_ms(points)
    kept = {size: times for size, times in samples.items() if times.size >= MIN_BATCHES_PER_SIZE}
    dropped = {str(size): int(times.size) for size, times in samples.items() if times.size < MIN_BATCHES_PER_SIZE}
    if not kept:
        seen = ", ".join(f"{s}: {t.size}" for s, t in samples.items()) or "none"
        raise CapsimInputError(
            f"too few batches in the measured intervals (batches per size: {seen}; need at least "
            f"{MIN_BATCHES_PER_SIZE} of one size): run the load test longer", source=str(points[0].run_dir))
    profile = Profile.from_samples(kept, **metadata)
    info: dict[str, object] = {
        "batches": int(sum(t.size for t in kept.values())),
        "batch_sizes": sorted(kept),
        "dropped_sizes": dropped,
        "min_batches_per_size": MIN_BATCHES_PER_SIZE,
        "window_lateness": window_lateness_ms(points),
    }
    return profile, info

"""White-box fit of `serving.frontend.window_late_quantiles_ms`: the batching timer fires late.

The reference server's batching window is a timer on its one event loop, so it fires only when the
loop gets round to it: measured on the quiet CPU (docs/validation.md), the window of a batch released
by its timer closed 0.2–0.3 ms late in the median for mlp and 0.4–5.6 ms for the CNN (p90 up to
12 ms, with a 2 ms window); on the H100 0.15–0.96 ms (p90 up to 9.5 ms). The simulator closes the
window on time unless told otherwise.

The lateness of each such batch is read from the batch log (whitebox.py,
`window_lateness_samples_ms`: the oldest request's wait minus `max_wait_ms`, for batches below the
maximum size whose executor was idle before them), pooled over the fit points, and tabulated as
`QUANTILES` evenly spaced quantiles (0th to 100th percentile); the simulator draws each timer's
delay from them (inverse CDF, linear in between). A parametric fit was tried first: a lognormal
matched to the median and 90th percentile put its 99th percentile 2.6× above the measured one (CPU
CNN: 42 vs 16 ms; mlp: 2.7 vs 1.1 ms) and pushed the held-out p99 too high. Every 0.1 percentile,
not every percentile: with 101 quantiles the top 1% of draws spread evenly between the 99th
percentile and the single largest lateness measured, and one outlier (58 ms among ~1,000 batches
of the contended CPU mlp run, p99 6.6 ms) then lifted the replayed p99 from 15 to 42 ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capsim.calibration.mechanism import ERROR_PERCENTILES, Mechanism, quantile_log_error
from capsim.calibration.runfolder import LoadPoint
from capsim.calibration.whitebox import window_lateness_samples_ms

QUANTILES = 1001  # every 0.1 percentile: the top interval (p99.9 to the maximum) carries 0.1% of the draws, not 1%
MIN_LATE_BATCHES = 20  # fewer timer-released batches say too little about the lateness


@dataclass(frozen=True)
class LatenessEstimate:
    """The batching timer's lateness, as quantiles, and what it was measured from."""

    quantiles_ms: list[float]
    batches: int
    per_point: dict[str, dict[str, float]]

    @property
    def median_ms(self) -> float:
        """The median lateness."""
        return self.quantiles_ms[len(self.quantiles_ms) // 2]

    @property
    def p90_ms(self) -> float:
        """The 90th percentile."""
        return self.quantiles_ms[round(0.9 * (len(self.quantiles_ms) - 1))]

    def scenario_patch(self) -> dict[str, dict[str, list[float]]]:
        """The `serving.frontend` field."""
        return {"frontend": {"window_late_quantiles_ms": self.quantiles_ms}}

    def describe(self) -> str:
        """The fitted lateness in one line."""
        return (f"batching timer: {self.median_ms:.3f} ms late (median; p90 {self.p90_ms:.3f} ms, "
                f"{self.batches} batches): replayed as window_late_quantiles_ms")

    def error(self, points: list[LoadPoint]) -> float | None:
        """The table's percentiles (drawn as the simulator draws: linear between quantiles) against
        those of the lateness measured at `points`; None with fewer than `MIN_LATE_BATCHES` there."""
        values = window_lateness_samples_ms(points)
        if values.size < MIN_LATE_BATCHES:
            return None
        grid = np.linspace(0.0, 100.0, len(self.quantiles_ms))
        modelled = np.interp(ERROR_PERCENTILES, grid, self.quantiles_ms)
        return quantile_log_error(modelled, np.percentile(values, ERROR_PERCENTILES))

    def as_dict(self) -> dict[str, object]:
        """For provenance."""
        return {"median_ms": self.median_ms, "p90_ms": self.p90_ms, "mean_ms": float(np.mean(self.quantiles_ms)),
                "batches": self.batches, "per_point": self.per_point}  # fmt: skip


def mean_preserving_top(values_ms: np.ndarray, quantiles_ms: np.ndarray) -> np.ndarray:
    """The table with its last value lowered so that the top step keeps the mean of the samples in it.

    A draw in the top step (the last 1/(QUANTILES − 1) of them) is uniform between the last two
    values; with more samples than that share holds, the last value, the single largest lateness,
    would stand for all of them. One stall among 5,000 timer releases (a 130 ms lateness where the
    p99.9 is 3 ms) then took 0.1% of the replayed timers at ~65 ms each instead of 0.02% at 130 ms, and
    the replayed p99 of a batching server came out twice the measured one. Lowering the maximum to
    `2 × mean(samples above the second-last value) − second-last value` keeps the step's mean — so the
    delay it adds over all batches is the measured one — and keeps a tail. (A profile instead gets
    finer top levels, `profile_format.sample_levels`; this field's quantiles sit at evenly spaced
    probabilities, so the top step's share is fixed and only its values can change.)
    """
    if values_ms.size <= quantiles_ms.size - 1:
        return quantiles_ms  # the top step holds no more than the largest sample's own share
    floor_ms = quantiles_ms[-2]
    top = values_ms[values_ms >= floor_ms]
    adjusted = quantiles_ms.copy()
    adjusted[-1] = float(np.clip(2.0 * top.mean() - floor_ms, floor_ms, quantiles_ms[-1]))
    return adjusted


def fit_lateness(points: list[LoadPoint]) -> LatenessEstimate | None:
    """The timer's lateness from the fit points' batch logs; None when fewer than
    `MIN_LATE_BATCHES` batches were released by the timer (no window, or always full batches) or
    the timer was on time."""
    values = window_lateness_samples_ms(points)
    if values.size < MIN_LATE_BATCHES:
        return None
    quantiles = mean_preserving_top(values, np.percentile(values, np.linspace(0.0, 100.0, QUANTILES)))
    if quantiles[-1] <= 0:
        return None
    per_point = {}
    for point in points:
        own = window_lateness_samples_ms([point])
        if own.size:
            p50, p90 = np.percentile(own, [50, 90])
            per_point[point.label] = {"median_ms": float(p50), "p90_ms": float(p90), "batches": int(own.size)}
    return LatenessEstimate([round(float(q), 6) for q in quantiles], int(values.size), per_point)


MECHANISM = Mechanism(
    name="window_late",
    title="the batching timer's lateness",
    fit=fit_lateness,
    requires=("frontend",),  # the timer runs on the front end's event loop
    unfitted=f"fewer than {MIN_LATE_BATCHES} batches were released by the batching timer, or it fired on time: "
             "its lateness is not modelled",
)  # fmt: skip

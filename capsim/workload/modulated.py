"""Time-varying Poisson processes: on/off bursts (MMPP), piecewise-constant steps, and a diurnal curve."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from typing import Literal

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from capsim.input_model import InputModel
from capsim.workload.base import DEFAULT_CHUNK, ArrivalProcess, poisson_segment


class MmppArrival(ArrivalProcess):
    """Two-state Markov-modulated Poisson process: exponential 'on' periods at `on_rate_rps`
    alternating with exponential 'off' periods at `off_rate_rps` (0 for silence)."""

    kind: Literal["mmpp"] = "mmpp"
    on_rate_rps: float = Field(gt=0)
    off_rate_rps: float = Field(default=0.0, ge=0)
    mean_on_s: float = Field(gt=0)
    mean_off_s: float = Field(gt=0)
    start_on: bool | None = Field(
        default=None, description="state at t=0; null draws it from the stationary distribution"
    )

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        on_share = self.mean_on_s / (self.mean_on_s + self.mean_off_s)
        on = bool(rng.random() < on_share) if self.start_on is None else self.start_on
        t = 0.0
        pending: list[np.ndarray] = []
        pending_count = 0
        while t < duration_s:
            period_s = rng.exponential(self.mean_on_s if on else self.mean_off_s)
            end = min(t + period_s, duration_s)
            times = poisson_segment(rng, self.on_rate_rps if on else self.off_rate_rps, t, end)
            if times.size:
                pending.append(times)
                pending_count += times.size
            if pending_count >= chunk:
                yield np.concatenate(pending)
                pending, pending_count = [], 0
            t, on = end, not on
        if pending:
            yield np.concatenate(pending)

    def mean_rate_rps(self, duration_s: float) -> float:
        total = self.mean_on_s + self.mean_off_s
        return (self.on_rate_rps * self.mean_on_s + self.off_rate_rps * self.mean_off_s) / total

    def peak_rate_rps(self, duration_s: float) -> float:
        return max(self.on_rate_rps, self.off_rate_rps)


class RateStep(InputModel):
    """From `start_s` on (until the next step), arrivals come at `rate_rps`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_s: float = Field(ge=0)
    rate_rps: float = Field(ge=0)


class StepsArrival(ArrivalProcess):
    """Piecewise-constant rate: Poisson arrivals whose rate changes at given times (load-test ramps,
    flash crowds). Before the first step the rate is zero."""

    kind: Literal["steps"] = "steps"
    steps: list[RateStep] = Field(min_length=1)

    @model_validator(mode="after")
    def _increasing(self) -> StepsArrival:
        starts = [s.start_s for s in self.steps]
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ValueError("steps must have strictly increasing start_s")
        return self

    def _segments(self, duration_s: float) -> Iterator[tuple[float, float, float]]:
        for i, step in enumerate(self.steps):
            end = self.steps[i + 1].start_s if i + 1 < len(self.steps) else duration_s
            end = min(end, duration_s)
            if end > step.start_s:
                yield step.start_s, end, step.rate_rps

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        for start, end, rate in self._segments(duration_s):
            # Long segments are cut into pieces so that memory stays bounded at any rate.
            piece_s = max(chunk / rate, 1e-9) if rate > 0 else end - start
            t = start
            while t < end:
                times = poisson_segment(rng, rate, t, min(t + piece_s, end))
                if times.size:
                    yield times
                t += piece_s

    def mean_rate_rps(self, duration_s: float) -> float:
        area = sum((end - start) * rate for start, end, rate in self._segments(duration_s))
        return area / duration_s if duration_s > 0 else 0.0

    def peak_rate_rps(self, duration_s: float) -> float:
        return max((rate for _, _, rate in self._segments(duration_s)), default=0.0)


class DiurnalArrival(ArrivalProcess):
    """A day-shaped rate: a raised cosine from `base_rps` at the trough to `peak_rps` at
    `peak_time_h` (hour of the day), with period `period_s` (a day by default; a shorter period
    compresses the same day shape, hours included). Sampled exactly as a non-homogeneous
    Poisson process by thinning (Lewis & Shedler)."""

    kind: Literal["diurnal"] = "diurnal"
    base_rps: float = Field(ge=0)
    peak_rps: float = Field(gt=0)
    peak_time_h: float = Field(default=14.0, ge=0, lt=24)
    start_time_h: float = Field(default=0.0, ge=0, lt=24, description="clock time at simulated t = 0")
    period_s: float = Field(default=86_400.0, gt=0)

    @model_validator(mode="after")
    def _peak_above_base(self) -> DiurnalArrival:
        if self.peak_rps < self.base_rps:
            raise ValueError("peak_rps must be >= base_rps")
        return self

    def rate_rps(self, t_s: np.ndarray) -> np.ndarray:
        """Instantaneous rate at simulated times `t_s`."""
        # Hours are hours of the modelled day: a shorter `period_s` compresses the whole day.
        # In place on one fresh array (the same operations in the same order as
        # base + (peak - base) * 0.5 * (1 + cos(2π phase / period))): a day's run calls this on
        # every candidate arrival, and each temporary cost a pass over fresh memory.
        rate = np.array(t_s, dtype=np.float64)  # (a copy, also of a scalar: a 0-d array takes `out=`)
        rate += (self.start_time_h - self.peak_time_h) / 24.0 * self.period_s
        rate *= 2.0 * math.pi
        rate /= self.period_s
        np.cos(rate, out=rate)
        rate += 1.0
        rate *= 0.5
        rate *= self.peak_rps - self.base_rps
        rate += self.base_rps
        return rate

    def _max_rate_rps(self, start_s: float, end_s: float) -> float:
        """The rate's maximum over [start_s, end_s]: the peak when a peak falls inside, else the
        larger end (the raised cosine is monotone between a trough and a peak)."""
        offset_s = (self.start_time_h - self.peak_time_h) / 24.0 * self.period_s
        if math.floor((offset_s + end_s) / self.period_s) >= math.ceil((offset_s + start_s) / self.period_s):
            return self.peak_rps
        return float(np.max(self.rate_rps(np.array([start_s, end_s]))))

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        # Thinning against the rate's maximum over each short piece (not the day's peak): exact for
        # any bound at or above the rate, and at night it draws a fraction of the candidates.
        piece_s = chunk / self.peak_rps
        t = 0.0
        while t < duration_s:
            end = min(t + piece_s, duration_s)
            bound_rps = self._max_rate_rps(t, end)
            candidates = poisson_segment(rng, bound_rps, t, end)
            scaled = rng.random(candidates.size)
            scaled *= bound_rps
            keep = scaled < self.rate_rps(candidates)
            if keep.any():
                yield candidates[keep]
            t = end

    def mean_rate_rps(self, duration_s: float) -> float:
        grid = np.linspace(0.0, duration_s, 10_001)
        return float(np.mean(self.rate_rps(0.5 * (grid[1:] + grid[:-1]))))

    def peak_rate_rps(self, duration_s: float) -> float:
        return float(np.max(self.rate_rps(np.linspace(0.0, duration_s, 10_001))))

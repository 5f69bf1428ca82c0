"""Replica stalls: rare spells in which the whole server process runs slow (`serving.stalls`).

Why: on the reference server (quiet CPU and H100 runs, docs/validation.md) the held-out p99 of
unbatched points stayed 66–75% low with i.i.d. or correlated batch times. The batch log shows the
tail comes from rare stalls of the whole process — about 0.1 per second, ~55–71 ms long — during
which batches ran 3.2–3.7× slower, the next batch was dispatched late and the front end was slower
too. A stall is a property of the process, not of one batch, so it is modelled as a process in time.

The model (exact; docs/model.md "Replica stalls"):

- each replica has its own stall schedule, from its own random stream (`stalls/replica-{i}`): the
  time from the end of one stall to the start of the next is exponential with mean
  `1 / rate_per_s` (stall starts are a Poisson process in the time outside stalls, so stalls never
  overlap), and each stall lasts a draw from `duration_ms` (fixed, or the inverse CDF through
  measured quantiles, linear in between);
- while a stall lasts, work on that replica progresses at `1 / slowdown` speed: a batch that starts
  at `t` with service time `w` ends when `w` of work is done, counting stalled time at
  `1 / slowdown` (so a batch wholly inside a stall takes `slowdown × w`; one overlapping a stall by
  `o` seconds of stalled progress takes `o × (slowdown − 1)` longer). The end is computed when the
  batch starts, from the schedule, which is drawn ahead as far as needed;
- the front end's per-request work (serving.frontend) is stretched the same way;
- dispatch is not held: batches start during stalls (the measured stalls hold 8 or more batches
  each), and the measured dispatch gaps inside stalls are folded into `slowdown`, which the
  calibration fits from busy time plus dispatch gaps (capsim/calibration/stall_fit.py).

The fixed `overhead_ms` (network, client) is outside the process and is not stretched.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_right

import numpy as np
from pydantic import ConfigDict, Field, field_validator

from capsim.input_model import InputModel
from capsim.rng import buffered


class StallSpec(InputModel):
    """`serving.stalls`: rare spells in which a replica's executor and front end run `slowdown` times slower."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rate_per_s: float = Field(gt=0, description="stalls per second per replica (outside stalls)")
    duration_ms: float | list[float] = Field(
        description="how long a stall lasts (ms): a fixed value, or quantiles at evenly spaced probabilities "
                    "from 0 to 1 (non-decreasing, > 0)",
    )  # fmt: skip
    slowdown: float = Field(ge=1, description="work during a stall progresses at 1/slowdown speed")

    @field_validator("duration_ms")
    @classmethod
    def _durations_valid(cls, value: float | list[float]) -> float | list[float]:
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) < 2:
            raise ValueError("expected a fixed duration or at least 2 quantiles (ms)")
        if any(not math.isfinite(v) or v <= 0 for v in values):
            raise ValueError("expected durations > 0 (ms)")
        if any(b < a for a, b in itertools.pairwise(values)):
            raise ValueError("expected non-decreasing quantiles (ms), from the 0th to the 100th percentile")
        return value

    @property
    def mean_duration_ms(self) -> float:
        """The mean stall length (ms): of the piecewise-linear inverse CDF when given as quantiles."""
        if isinstance(self.duration_ms, list):
            q = np.asarray(self.duration_ms, dtype=float)
            return float(np.mean((q[1:] + q[:-1]) / 2))
        return float(self.duration_ms)

    def schedule(self, rng: np.random.Generator) -> StallSchedule:
        """A replica's stall schedule, drawn lazily from `rng`."""
        return StallSchedule(self, rng)


class StallSchedule:
    """One replica's stalls as sorted, non-overlapping [start, end) intervals, drawn ahead as needed."""

    def __init__(self, spec: StallSpec, rng: np.random.Generator) -> None:
        self.slowdown = spec.slowdown
        mean_gap_s = 1.0 / spec.rate_per_s
        self._gap_s = buffered(lambda n: rng.exponential(mean_gap_s, n)).__next__
        if isinstance(spec.duration_ms, list):
            q_s = np.asarray(spec.duration_ms, dtype=float) / 1000.0
            grid = np.linspace(0.0, 1.0, q_s.size)
            self._duration_s = buffered(lambda n: np.interp(rng.random(n), grid, q_s)).__next__
        else:
            fixed_s = spec.duration_ms / 1000.0
            self._duration_s = lambda: fixed_s
        self.starts_s: list[float] = []
        self.ends_s: list[float] = []
        self._draw()

    def _draw(self) -> None:
        last_end_s = self.ends_s[-1] if self.ends_s else 0.0
        start_s = last_end_s + float(self._gap_s())
        self.starts_s.append(start_s)
        self.ends_s.append(start_s + float(self._duration_s()))

    def end_s(self, start_s: float, work_s: float) -> float:
        """When `work_s` seconds of work started at `start_s` is done, stalled time counting at
        1/slowdown."""
        starts, ends = self.starts_s, self.ends_s
        while ends[-1] <= start_s:
            self._draw()
        i = bisect_right(ends, start_s)  # the first stall not over at start_s
        t, left = start_s, work_s
        slowdown = self.slowdown
        while True:
            if i == len(starts):
                self._draw()
            stall_start_s, stall_end_s = starts[i], ends[i]
            if t < stall_start_s:
                if t + left <= stall_start_s:
                    return t + left  # (the common case: no stall before the work is done)
                left -= stall_start_s - t
                t = stall_start_s
            progress_s = (stall_end_s - t) / slowdown  # work the rest of this stall gets done
            if left <= progress_s:
                return t + left * slowdown
            left -= progress_s
            t = stall_end_s
            i += 1

    def stalled_s(self, until_s: float) -> float:
        """Stalled time in [0, until_s) (for tests and reports)."""
        while self.ends_s[-1] <= until_s:
            self._draw()
        return float(sum(max(0.0, min(e, until_s) - s) for s, e in zip(self.starts_s, self.ends_s, strict=True)
                         if s < until_s))  # fmt: skip

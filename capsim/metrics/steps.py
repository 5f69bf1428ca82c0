"""Exact time integrals of quantities that change rarely (replica counts, billed nodes), kept as
their change points."""

from __future__ import annotations

import numpy as np


class StepSeries:
    """A piecewise-constant quantity recorded at each change: value `v_k` holds from `t_k` on."""

    def __init__(self, value: float = 0.0, start_s: float = 0.0) -> None:
        self.times_s: list[float] = [start_s]
        self.values: list[float] = [value]

    def set(self, t_s: float, value: float) -> None:
        """The quantity takes `value` from `t_s` on (times never go backwards)."""
        if value == self.values[-1]:
            return
        if t_s == self.times_s[-1]:
            self.values[-1] = value
        else:
            self.times_s.append(t_s)
            self.values.append(value)

    def add(self, t_s: float, delta: float) -> None:
        """Change the quantity by `delta` from `t_s` on."""
        self.set(t_s, self.values[-1] + delta)

    def area_at(self, ticks_s: np.ndarray) -> np.ndarray:
        """The integral from the start up to each tick."""
        times = np.asarray(self.times_s)
        values = np.asarray(self.values)
        segment_area = np.concatenate([[0.0], np.cumsum(values[:-1] * np.diff(times))])
        k = np.searchsorted(times, ticks_s, side="right") - 1
        k = np.clip(k, 0, None)
        return segment_area[k] + values[k] * np.maximum(ticks_s - times[k], 0.0)

    def extremes_between(self, start_s: float, end_s: float) -> tuple[float, float]:
        """(min, max) of the value over [start_s, end_s]."""
        times = np.asarray(self.times_s)
        values = np.asarray(self.values)
        first = max(int(np.searchsorted(times, start_s, side="right")) - 1, 0)
        last = int(np.searchsorted(times, end_s, side="left"))
        window = values[first : max(last, first + 1)]
        return float(window.min()), float(window.max())

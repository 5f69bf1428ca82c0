"""Time-weighted ("level") statistics: quantities that hold a value over time, such as queue length
or busy executors. Their averages weight each value by how long it was held, unlike per-request
("tally") statistics."""

from __future__ import annotations


class Level:
    """A piecewise-constant quantity and the running integral of it over time.

    `change(t, delta)` may be given a time earlier than the simulation clock (a queued request that
    timed out is removed when it is next looked at, but at its deadline), as long as times given to
    one Level never go backwards.
    """

    __slots__ = ("area", "last_s", "maximum", "value")

    def __init__(self, value: float = 0.0, start_s: float = 0.0) -> None:
        self.value = value
        self.last_s = start_s
        self.area = 0.0
        self.maximum = value

    def change(self, t_s: float, delta: float) -> None:
        """Add `delta` to the level from time `t_s` on."""
        self.area += self.value * (t_s - self.last_s)
        self.last_s = t_s
        self.value += delta
        if self.value > self.maximum:
            self.maximum = self.value

    def area_at(self, t_s: float) -> float:
        """The integral of the level from the start up to `t_s` (>= the last change)."""
        return self.area + self.value * (t_s - self.last_s)

"""Running time integrals of fleet metrics that autoscalers read while the simulation runs."""

from __future__ import annotations


class RunningIntegral:
    """A level and its integral since t = 0; updates must come in time order."""

    __slots__ = ("area", "last_s", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.last_s = 0.0
        self.area = 0.0

    def add(self, t_s: float, delta: float) -> None:
        """Change the level by `delta` at `t_s`."""
        if t_s > self.last_s:
            self.area += self.value * (t_s - self.last_s)
            self.last_s = t_s
        self.value += delta

    def area_at(self, t_s: float) -> float:
        """The integral up to `t_s` (>= the last update)."""
        return self.area + self.value * max(t_s - self.last_s, 0.0)


class LiveMetrics:
    """Concurrency (requests in flight, activator included) and busy executors, integrated over time
    the way a pod's metrics agent reports averages — not sampled, so a window average is exact."""

    __slots__ = ("busy", "concurrency")

    def __init__(self) -> None:
        self.concurrency = RunningIntegral()
        self.busy = RunningIntegral()

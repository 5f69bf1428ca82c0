"""A pool of identical pull-based workers (Kafka consumers, queue workers): how members come and go
and what they cost, shared by the streaming and async modes.

A member is billed from the start of its cold start (node provisioning unless a warm node is free,
image pull, model load, as in the real-time fleet) until it has left; it serves only once ready. A
member asked to leave finishes the batch it is processing first. Counts are kept as exact step
series, and the work in progress as the integrals the compiled loops fold per tick interval, so
that time averages (utilization, billed members, cost) are exact integrals.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import simpy

from capsim.metrics.steps import StepSeries
from capsim.serving.coldstart import ColdStart


class BinnedLevel(StepSeries):
    """A level whose time integral the compiled loop folds per tick interval (busy consumers, records
    in service): it keeps no change points, only the integral up to each tick."""

    def __init__(self, ticks: np.ndarray, bins: np.ndarray) -> None:
        super().__init__(0.0)
        self.ticks = ticks
        self.bins = bins

    def area_at(self, ticks_s: np.ndarray) -> np.ndarray:
        """The integral from the start up to each tick (the run's own ticks)."""
        assert ticks_s is self.ticks or np.array_equal(ticks_s, self.ticks)
        return np.cumsum(self.bins[: self.ticks.size])


class PoolLevels:
    """Member counts over time as exact step series, and the work in progress (`busy_area`,
    `in_service_area`: the integrals the compiled loop folds per tick interval of `ticks`)."""

    def __init__(self, ready: int, warm_pool: int, ticks: np.ndarray, busy_area: np.ndarray,
                 in_service_area: np.ndarray) -> None:  # fmt: skip
        self.desired = StepSeries(ready)
        self.starting = StepSeries(0)
        self.ready = StepSeries(ready)  # members that serve (or wait for work)
        self.billed = StepSeries(ready + warm_pool)  # nodes paid for: starting, ready, leaving, warm pool
        self.busy = BinnedLevel(ticks, busy_area)  # members processing a batch
        self.in_service = BinnedLevel(ticks, in_service_area)  # items inside batches being processed


class ColdStarter:
    """Starts new members after a sampled cold start; a warm node skips provisioning and is replaced
    by launching another (billed as part of the pool, like the real-time fleet's warm pool)."""

    def __init__(self, env: simpy.Environment, cold: ColdStart, rng: np.random.Generator, levels: PoolLevels) -> None:
        self.env = env
        self.cold = cold
        self.rng = rng
        self.levels = levels
        self.warm_nodes = cold.warm_pool
        self.pending: list[simpy.Event] = []
        self.cold_starts = 0

    def start(self, on_ready: Callable[[], None]) -> None:
        """Begin one member's cold start; `on_ready` runs when it can serve (unless cancelled)."""
        now = self.env.now
        self.cold_starts += 1
        self.levels.billed.add(now, 1)
        if self.warm_nodes > 0:
            self.warm_nodes -= 1
            provisioning_s = 0.0
            self.env.timeout(self.cold.provisioning_s.sample_s(self.rng)).callbacks.append(self._refill)
        else:
            provisioning_s = self.cold.provisioning_s.sample_s(self.rng)
        delay_s = provisioning_s + self.cold.image_pull_s.sample_s(self.rng) + self.cold.model_load_s.sample_s(self.rng)
        event = self.env.timeout(delay_s)
        self.pending.append(event)
        self.levels.starting.set(now, len(self.pending))

        def ready(_event: simpy.Event) -> None:
            if event not in self.pending:
                return  # cancelled by a scale-down before it was ready
            self.pending.remove(event)
            self.levels.starting.set(self.env.now, len(self.pending))
            on_ready()

        event.callbacks.append(ready)

    def cancel_one(self) -> bool:
        """Cancel the most recent pending start (it stops being billed now); False if none."""
        if not self.pending:
            return False
        self.pending.pop()
        now = self.env.now
        self.levels.starting.set(now, len(self.pending))
        self.levels.billed.add(now, -1)
        return True

    def _refill(self, _event: simpy.Event) -> None:
        self.warm_nodes += 1


"""The controller process: samples fleet metrics, asks the policy at its period, applies the answer.

Policies are small objects with a `decide(view) -> replicas` method and their own memory; this is
the only part of autoscaling that touches SimPy.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from capsim.autoscale import AutoscalingSpec, ScheduleWindow, schedule_floor
from capsim.autoscale.view import FleetView, MetricSamples, ScalableFleet

SAMPLE_INTERVAL_S = 1.0  # Knative scrapes pod metrics every second; finer than every other policy needs


class AutoscaleController:
    """Runs one autoscaling policy (plus an optional time-of-day floor) against a fleet."""

    def __init__(
        self,
        env: simpy.Environment,
        fleet: ScalableFleet,
        policy: AutoscalingSpec,
        schedule: list[ScheduleWindow],
        clock_start_h: float,
    ) -> None:
        self.env = env
        self.fleet = fleet
        self.policy = policy
        self.state = policy.make_state()
        self.schedule = schedule
        self.clock_start_h = clock_start_h
        self.samples = MetricSamples()
        self._poke_pending = False
        env.process(self._sample_loop())
        env.process(self._decide_loop())
        if policy.kind in ("kpa", "ray_serve"):
            # Knative's activator and Ray Serve's handle wake the autoscaler when requests wait at zero.
            fleet.on_buffered = self.poke

    def _record(self) -> None:
        self.samples.record(self.env.now, **self.fleet.sample())

    def _sample_loop(self) -> Generator[simpy.Event, Any, None]:
        while True:
            self._record()
            yield self.env.timeout(SAMPLE_INTERVAL_S)

    def _decide_loop(self) -> Generator[simpy.Event, Any, None]:
        while True:
            yield self.env.timeout(self.policy.period_s)
            self.evaluate()

    def evaluate(self) -> None:
        """Ask the policy now and scale the fleet to its answer (never below the schedule's floor)."""
        fleet, env = self.fleet, self.env
        view = FleetView(
            now_s=env.now,
            current=fleet.current,
            ready=len(fleet.ready),
            not_ready=len(fleet.starting),
            executors_per_replica=fleet.config.instances,
            samples=self.samples,
            in_flight_now=fleet.in_flight_now(),
        )
        desired = self.state.decide(view)
        if self.schedule:
            floor = schedule_floor(self.schedule, env.now, self.clock_start_h)
            desired = min(max(desired, floor), self.policy.max_replicas)
        if desired != fleet.current:
            fleet.scale_to(desired)

    def poke(self, t_s: float) -> None:
        """Requests are waiting with no replica ready: evaluate at `t_s` (not at the next tick)."""
        if self._poke_pending or self.fleet.starting:
            return
        self._poke_pending = True
        self.env.timeout(t_s - self.env.now).callbacks.append(self._on_poke)

    def _on_poke(self, _event: simpy.Event) -> None:
        self._poke_pending = False
        self._record()
        self.evaluate()

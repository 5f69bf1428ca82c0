"""Knative Pod Autoscaler (KPA), as knative/serving's autoscaler.go computes it every tick (2 s).

Concurrency (or requests per second) summed over pods is averaged over a stable window (60 s) and a
panic window (10% of it, 6 s). Desired pods are ceil(average / per-pod target), bounded by the max
scale-up rate (1000×) and max scale-down rate (2×) relative to ready pods. When the panic-window
demand reaches 2× the ready pods' capacity the autoscaler panics: it scales on the panic window and
never scales down until it has been out of panic for a whole stable window. With no traffic for a
whole stable window it scales to zero after the grace period; requests arriving at zero wait in the
activator, which pokes the autoscaler. Sources: docs/sources.md#knative-kpa.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.view import FleetView


class KpaPolicy(PolicyBase):
    """`autoscaling: {kind: kpa, ...}` with Knative's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["kpa"] = "kpa"
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(ge=1)
    metric: Literal["concurrency", "rps"] = "concurrency"
    target: float = Field(default=100.0, gt=0, description="per-pod concurrency (or rps) target before utilization")
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    stable_window_s: float = Field(default=60.0, ge=6, le=3600)
    panic_window_percentage: float = Field(default=10.0, ge=1, le=100)
    panic_threshold_percentage: float = Field(default=200.0, ge=110, le=1000)
    max_scale_up_rate: float = Field(default=1000.0, gt=1)
    max_scale_down_rate: float = Field(default=2.0, gt=1)
    tick_s: float = Field(default=2.0, gt=0)
    scale_to_zero_grace_period_s: float = Field(default=30.0, ge=0)
    scale_down_delay_s: float = Field(default=0.0, ge=0)


    @property
    def period_s(self) -> float:
        """How often the controller asks this policy."""
        return self.tick_s

    @property
    def panic_window_s(self) -> float:
        """The panic window: a percentage of the stable window, whole seconds (at least 1)."""
        return max(1.0, round(self.stable_window_s * self.panic_window_percentage / 100.0))

    @property
    def per_pod_target(self) -> float:
        """target × utilization, at least 1 (ResolveMetricTarget)."""
        return max(1.0, self.target * self.target_utilization)

    def make_state(self) -> KpaState:
        """Fresh autoscaler memory for one run."""
        return KpaState(self)


class KpaState:
    """The autoscaler's memory: panic mode, the pods reached while panicking, scale-down delay."""

    def __init__(self, policy: KpaPolicy) -> None:
        self.policy = policy
        self.panic_since_s: float | None = None  # last time the panic condition held
        self.max_panic_pods = 0
        self.recent: list[tuple[float, int]] = []  # desired values within scale_down_delay_s
        self.last_traffic_s = 0.0
        self.in_panic = False

    def _demand(self, view: FleetView, window_s: float) -> float:
        samples = view.samples
        if self.policy.metric == "rps":
            return samples.rate_per_s(window_s, view.now_s)
        return samples.mean("concurrency", window_s, view.now_s)

    def decide(self, view: FleetView) -> int:
        """The desired pod count at `view.now_s`."""
        policy = self.policy
        stable = self._demand(view, policy.stable_window_s)
        panic = self._demand(view, policy.panic_window_s)
        stable = 0.0 if math.isnan(stable) else stable
        panic = 0.0 if math.isnan(panic) else panic
        if panic > 0 or view.in_flight_now > 0:
            self.last_traffic_s = view.now_s
        ready = max(1, view.ready)
        max_up = math.ceil(policy.max_scale_up_rate * ready)
        max_down = math.floor(ready / policy.max_scale_down_rate) if view.ready > 0 else 0
        target = policy.per_pod_target
        dspc = math.ceil(stable / target)
        dppc = math.ceil(panic / target)
        desired_stable = min(max(dspc, max_down), max_up)
        desired_panic = min(max(dppc, max_down), max_up)
        over_panic = dppc / ready >= policy.panic_threshold_percentage / 100.0
        if over_panic:
            self.panic_since_s = view.now_s
            self.in_panic = True
        elif self.in_panic and self.panic_since_s is not None and (
            self.panic_since_s + policy.stable_window_s < view.now_s
        ):
            self.in_panic = False
            self.max_panic_pods = 0
        if self.in_panic:
            desired = max(desired_stable, desired_panic, self.max_panic_pods)
            self.max_panic_pods = desired
        else:
            desired = desired_stable
        if policy.scale_down_delay_s > 0:
            self.recent = [(t, d) for t, d in self.recent if t > view.now_s - policy.scale_down_delay_s]
            self.recent.append((view.now_s, desired))
            desired = max(d for _, d in self.recent)
        if desired == 0:
            # Scale to zero only after no traffic for a whole stable window plus the grace period.
            quiet_s = view.now_s - self.last_traffic_s
            if quiet_s < policy.stable_window_s + policy.scale_to_zero_grace_period_s and view.current > 0:
                desired = 1
        if view.current == 0 and view.in_flight_now > 0:
            # The activator holds requests: wake up at once, enough pods for what is waiting.
            desired = max(desired, math.ceil(view.in_flight_now / target), 1)
        return min(max(desired, policy.min_replicas), policy.max_replicas)

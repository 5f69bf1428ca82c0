"""Ray Serve's default autoscaling policy (replica_queue_length_autoscaling_policy).

Every control-loop tick (0.1 s) the policy compares ongoing requests (queued + running, averaged
over `look_back_period_s`) with `target_ongoing_requests` per replica, smooths the step with the
up/downscaling factor, and applies it only after the same direction has held for
`upscale_delay_s` (30 s) or `downscale_delay_s` (600 s). From zero it scales up at once when
requests wait. Sources: docs/sources.md#ray-serve.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.view import FleetView


class RayServePolicy(PolicyBase):
    """`autoscaling: {kind: ray_serve, ...}` with Ray Serve's defaults (Ray ≥ 2.32)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["ray_serve"] = "ray_serve"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    target_ongoing_requests: float = Field(default=2.0, gt=0)
    upscale_delay_s: float = Field(default=30.0, ge=0)
    downscale_delay_s: float = Field(default=600.0, ge=0)
    downscale_to_zero_delay_s: float | None = Field(default=None, ge=0)
    upscaling_factor: float = Field(default=1.0, gt=0)
    downscaling_factor: float = Field(default=1.0, gt=0)
    look_back_period_s: float = Field(default=30.0, gt=0)
    metrics_interval_s: float = Field(default=10.0, gt=0, description="how often replicas push their metrics")
    control_loop_interval_s: float = Field(default=0.1, gt=0)


    @property
    def period_s(self) -> float:
        """How often the controller asks this policy."""
        return self.control_loop_interval_s

    def make_state(self) -> RayServeState:
        """Fresh controller memory for one run."""
        return RayServeState(self)


class RayServeState:
    """The decision counter (positive: consecutive 'up' ticks; negative: 'down' ticks)."""

    def __init__(self, policy: RayServePolicy) -> None:
        self.policy = policy
        self.counter = 0
        self._pushed_at_s = -math.inf
        self._ongoing = 0.0

    def _ongoing_requests(self, view: FleetView) -> float:
        # Metrics reach the controller only when replicas push them (every metrics_interval_s).
        policy = self.policy
        if view.now_s - self._pushed_at_s >= policy.metrics_interval_s - 1e-9:
            self._pushed_at_s = view.now_s
            value = view.samples.mean("concurrency", policy.look_back_period_s, view.now_s)
            self._ongoing = 0.0 if math.isnan(value) else value
        return self._ongoing

    def decide(self, view: FleetView) -> int:
        """The target replica count at `view.now_s`."""
        policy = self.policy
        current = view.current
        ongoing = self._ongoing_requests(view)
        if current == 0:
            # Cold-start fast path: any request waiting brings a replica up without delay.
            if view.in_flight_now > 0 or ongoing > 0:
                return max(math.ceil(1 * policy.upscaling_factor), policy.min_replicas, 1)
            return policy.min_replicas
        desired_raw = ongoing / policy.target_ongoing_requests
        factor = policy.upscaling_factor if desired_raw > current else policy.downscaling_factor
        scaled = math.ceil(current + factor * (desired_raw - current))
        if math.ceil(desired_raw) < current and scaled == current:
            scaled -= 1  # guarantee progress on downscale
        bounded = min(max(scaled, policy.min_replicas), policy.max_replicas)
        if bounded > current:
            self.counter = max(self.counter, 0) + 1
            if self.counter > int(policy.upscale_delay_s / policy.control_loop_interval_s):
                self.counter = 0
                return bounded
        elif bounded < current:
            self.counter = min(self.counter, 0) - 1
            to_zero = bounded == 0 and current == 1
            delay_s = policy.downscale_to_zero_delay_s if to_zero and policy.downscale_to_zero_delay_s is not None \
                else policy.downscale_delay_s  # fmt: skip
            if self.counter < -int(delay_s / policy.control_loop_interval_s):
                self.counter = 0
                return bounded if to_zero else max(bounded, 1)
        else:
            self.counter = 0
        return current

"""Ray Serve's default autoscaling policy (replica_queue_length_autoscaling_policy).

Every control-loop tick (0.1 s) the policy compares ongoing requests (queued + running, averaged
over `look_back_period_s`) with `target_ongoing_requests` per running replica, smooths the step
from the running replicas with the up/downscaling factor, and moves the target replica count only
after the same direction has held for `upscale_delay_s` (30 s) or `downscale_delay_s` (600 s) of
wall-clock time (to zero: `downscale_to_zero_delay_s`, from a target of 1 only); then
[min, max]. With no replica running it keeps the target, or scales up at once (cold start) when
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


DELAY_ELAPSED_EPS_S = 1e-6  # _DELAY_ELAPSED_EPS_S: float slack when comparing elapsed time with a delay


def apply_scaling_factors(desired: float, running: int, policy: RayServePolicy) -> int:
    """_apply_scaling_factors: move from the running replicas by the factor of the direction; a
    downscale the factor would leave stuck still drops one replica."""
    if running == 0:
        return math.ceil(desired)
    delta = desired - running
    factor = policy.upscaling_factor if delta > 0 else policy.downscaling_factor
    scaled = math.ceil(running + factor * delta)
    if math.ceil(desired) < running and scaled == running:
        scaled -= 1
    return scaled


class RayServeState:
    """The pending decision: its direction (+1 up, −1 down, 0 none) and when it was first made."""

    def __init__(self, policy: RayServePolicy) -> None:
        self.policy = policy
        self.direction = 0
        self.since_s: float | None = None
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

    def apply_delay(self, desired: int, target: int, now_s: float) -> int:
        """_apply_delay_logic: the new target once the same direction has been wanted for its delay
        (wall-clock, from the first such decision), else the current `target`."""
        policy = self.policy
        direction = (desired > target) - (desired < target)
        if direction == 0:
            self.direction, self.since_s = 0, None
            return target
        if direction != self.direction:
            self.direction, self.since_s = direction, now_s
        if direction > 0:
            delay_s = policy.upscale_delay_s
        elif target == 1:  # downscaling to zero is only allowed from 1
            delay_s = policy.downscale_delay_s if policy.downscale_to_zero_delay_s is None \
                else policy.downscale_to_zero_delay_s  # fmt: skip
        else:
            delay_s = policy.downscale_delay_s
            desired = max(1, desired)
        since_s = now_s if self.since_s is None else self.since_s
        if now_s - since_s + DELAY_ELAPSED_EPS_S >= delay_s:
            self.direction, self.since_s = 0, None
            return desired
        return target

    def policy_decision(self, total_requests: float, running: int, target: int, now_s: float) -> int:
        """The default policy wrapped with the default parameters (before [min, max]): `running`
        replicas serve, `target` is the replica count asked for so far."""
        policy = self.policy
        if running == 0 and total_requests > 0:
            # Cold start fast path: a request waiting brings a replica up without delay.
            return max(math.ceil(1 * policy.upscaling_factor), target)
        if running == 0:
            desired: float = target  # nothing runs yet: keep the target
        else:
            desired = running * (total_requests / (policy.target_ongoing_requests * running))
        scaled = apply_scaling_factors(desired, running, policy)
        if running == 0 and scaled > 0:
            return scaled
        return self.apply_delay(max(0, scaled), target, now_s)

    def decide(self, view: FleetView) -> int:
        """The target replica count at `view.now_s`."""
        policy = self.policy
        ongoing = self._ongoing_requests(view)
        # Requests waiting in the handle with no replica running count at once (Ray's handle metrics).
        total = max(ongoing, float(view.in_flight_now)) if view.ready == 0 else ongoing
        decision = self.policy_decision(total, view.ready, view.current, view.now_s)
        return min(max(decision, policy.min_replicas), policy.max_replicas)

"""Knative Pod Autoscaler (KPA), as knative/serving's autoscaler.go computes it every tick (2 s).

Concurrency (or requests per second) summed over pods is averaged over a stable window (60 s) and a
panic window (10% of it, rounded to whole seconds, at least 1 s). Desired pods are
ceil(average / per-pod target), the target being target × utilization but at least 0.01
(ResolveMetricTarget), bounded by the max scale-up rate (1000×) and max scale-down rate (2×)
relative to ready pods. When the panic-window demand reaches 2× the ready pods' capacity the
autoscaler panics: it scales on the larger of the two windows and never scales down until it has
been out of panic for a whole stable window. An autoscaler created over more than one ready pod
starts in panic (it has no metric history yet). With no traffic for a whole stable window it scales
to zero after the grace period; requests arriving at zero wait in the activator, which pokes the
autoscaler. With an initial scale above 1, the minimum is raised to it until the revision has once had
that many pods ready (the scale target is initialized). Sources: docs/sources.md#knative-kpa.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.view import FleetView


class KpaPolicy(PolicyBase):
    """`autoscaling: {kind: kpa, ...}` with Knative's defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["kpa"] = "kpa"
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(ge=1)
    metric: Literal["concurrency", "rps"] = "concurrency"
    target: float | None = Field(
        default=None, gt=0, description="per-pod concurrency (or rps) target before utilization; default 100 (rps: 200)"
    )
    target_utilization: float = Field(default=0.7, gt=0, le=1)
    stable_window_s: float = Field(default=60.0, ge=6, le=3600)
    panic_window_percentage: float = Field(default=10.0, ge=1, le=100)
    panic_threshold_percentage: float = Field(default=200.0, ge=110, le=1000)
    max_scale_up_rate: float = Field(default=1000.0, gt=1)
    max_scale_down_rate: float = Field(default=2.0, gt=1)
    tick_s: float = Field(default=2.0, gt=0)
    scale_to_zero_grace_period_s: float = Field(default=30.0, ge=0)
    scale_down_delay_s: float = Field(default=0.0, ge=0)
    activation_scale: int = Field(
        default=1, ge=1, description="the smallest non-zero pod count (autoscaling.knative.dev/activation-scale)"
    )
    initial_scale: int = Field(
        default=1,
        ge=0,
        description="pods the revision must reach (ready) before the autoscaler may go below them "
        "(autoscaling.knative.dev/initial-scale; the `initial-scale` config, default 1)",
    )
    allow_zero_initial_scale: bool = Field(
        default=False, description="whether initial_scale may be 0 (the `allow-zero-initial-scale` config)"
    )

    @model_validator(mode="after")
    def _initial_scale_zero(self) -> KpaPolicy:
        # annotation_validation.go validateInitialScale
        if self.initial_scale == 0 and not self.allow_zero_initial_scale:
            raise ValueError("initial_scale 0 needs allow_zero_initial_scale: true")
        return self

    @property
    def period_s(self) -> float:
        """How often the controller asks this policy."""
        return self.tick_s

    @property
    def panic_window_s(self) -> float:
        """The panic window: a percentage of the stable window, rounded to whole seconds half away from
        zero (Go's Duration.Round), at least one 1 s bucket (MakeMetric)."""
        return max(1.0, math.floor(self.stable_window_s * self.panic_window_percentage / 100.0 + 0.5))

    @property
    def total_target(self) -> float:
        """The per-pod target before utilization: `target`, else Knative's default (container-
        concurrency-target-default 100, requests-per-second-target-default 200)."""
        if self.target is not None:
            return self.target
        return RPS_TARGET_DEFAULT if self.metric == "rps" else CONCURRENCY_TARGET_DEFAULT

    @property
    def per_pod_target(self) -> float:
        """target × utilization, at least TargetMin = 0.01 (ResolveMetricTarget)."""
        return max(TARGET_MIN, self.total_target * self.target_utilization)

    def make_state(self) -> KpaState:
        """Fresh autoscaler memory for one run."""
        return KpaState(self)


TARGET_MIN = 0.01  # autoscaling.TargetMin: the smallest per-pod target
CONCURRENCY_TARGET_DEFAULT = 100.0
RPS_TARGET_DEFAULT = 200.0


class KpaState:
    """The autoscaler's memory: panic mode, the pods reached while panicking, scale-down delay."""

    def __init__(self, policy: KpaPolicy, ready_at_creation: int | None = None, created_s: float = 0.0) -> None:
        self.policy = policy
        self.panic_since_s: float | None = None  # last time the panic condition held (Knative's panicTime)
        self.max_panic_pods = 0
        self.recent: list[tuple[float, int]] = []  # desired values within scale_down_delay_s
        self.last_traffic_s = 0.0
        self.scale_target_initialized = False  # the revision has once had its initial scale ready
        self._created = False
        if ready_at_creation is not None:
            self.create(ready_at_creation, created_s)

    @property
    def in_panic(self) -> bool:
        """Whether the autoscaler is in panic mode."""
        return self.panic_since_s is not None

    def create(self, ready: int, now_s: float) -> None:
        """newAutoscaler: with no metric history yet, an autoscaler created over more than one ready
        pod starts in panic, holding the pods it found."""
        self._created = True
        self.max_panic_pods = ready
        if ready > 1:
            self.panic_since_s = now_s

    def _demand(self, view: FleetView, window_s: float) -> float:
        samples = view.samples
        if self.policy.metric == "rps":
            return samples.rate_per_s(window_s, view.now_s)
        return samples.mean("concurrency", window_s, view.now_s)

    def scale(self, stable: float, panic: float, ready: int, now_s: float) -> int | None:
        """autoscaler.go Scale: the desired pod count from the stable and panic window averages (None
        without data: no scaling)."""
        if math.isnan(stable) or math.isnan(panic):
            return None
        policy = self.policy
        pods = max(1, ready)  # "use 1 if there are zero current pods"
        max_up = math.ceil(policy.max_scale_up_rate * pods)
        max_down = math.floor(pods / policy.max_scale_down_rate)
        target = policy.per_pod_target
        dspc = math.ceil(stable / target)
        dppc = math.ceil(panic / target)
        desired_stable = min(max(dspc, max_down), max_up)
        desired_panic = min(max(dppc, max_down), max_up)
        if policy.activation_scale > 1:
            # Any demand at all asks for at least the activation scale.
            if dspc > 0:
                desired_stable = max(desired_stable, policy.activation_scale)
            if dppc > 0:
                desired_panic = max(desired_panic, policy.activation_scale)
        if dppc / pods >= policy.panic_threshold_percentage / 100.0:
            self.panic_since_s = now_s  # begin panicking, or extend the panic
        elif self.panic_since_s is not None and self.panic_since_s + policy.stable_window_s < now_s:
            self.panic_since_s = None  # the surge has made its way into the stable window
            self.max_panic_pods = 0
        desired = desired_stable
        if self.panic_since_s is not None:
            # Provision for the larger window; never scale down while panicking.
            self.max_panic_pods = max(self.max_panic_pods, desired_stable, desired_panic)
            desired = self.max_panic_pods
        if policy.scale_down_delay_s > 0:
            self.recent = [(t, d) for t, d in self.recent if t > now_s - policy.scale_down_delay_s]
            self.recent.append((now_s, desired))
            desired = max(d for _, d in self.recent)
        return desired

    def apply_bounds(self, desired: int, ready: int) -> int:
        """scaler.go scale's bounds, then computeActiveCondition's bookkeeping: until the scale target
        is initialized, an initial scale above 1 raises the minimum to it; the target becomes
        initialized once `ready` reaches max(min_replicas, initial_scale) (activeThreshold), which
        takes effect from the next decision (Knative checks the status before it updates it)."""
        policy = self.policy
        min_scale = policy.min_replicas
        if policy.initial_scale > 1 and not self.scale_target_initialized:
            min_scale = max(min_scale, policy.initial_scale)
        if ready >= max(policy.min_replicas, policy.initial_scale):
            self.scale_target_initialized = True
        return min(max(desired, min_scale), policy.max_replicas)

    def decide(self, view: FleetView) -> int:
        """The desired pod count at `view.now_s` (the autoscaler, then the KPA's scale-to-zero rules)."""
        policy = self.policy
        if not self._created:
            self.create(view.ready, 0.0)  # the autoscaler exists from the start of the run
        stable = self._demand(view, policy.stable_window_s)
        panic = self._demand(view, policy.panic_window_s)
        if panic > 0 or view.in_flight_now > 0:
            self.last_traffic_s = view.now_s
        scaled = self.scale(stable, panic, view.ready, view.now_s)
        desired = view.current if scaled is None else scaled
        if desired == 0:
            # Scale to zero only after no traffic for a whole stable window plus the grace period.
            quiet_s = view.now_s - self.last_traffic_s
            if quiet_s < policy.stable_window_s + policy.scale_to_zero_grace_period_s and view.current > 0:
                desired = 1
        if view.current == 0 and view.in_flight_now > 0:
            # The activator holds requests: wake up at once, enough pods for what is waiting.
            desired = max(desired, math.ceil(view.in_flight_now / policy.per_pod_target), 1)
        return self.apply_bounds(desired, view.ready)

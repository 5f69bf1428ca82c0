"""KEDA ScaledObject: queue-driven scaling with an HPA underneath.

KEDA's operator polls the trigger every `polling_interval_s` (30 s) and owns 0↔1: the workload is
active while the metric exceeds `activation_threshold`, and goes to zero only `cooldown_period_s`
(300 s) after the last active poll. Between 1 and N, the generated HPA scales on the metric as an
AverageValue target: desired = ceil(metric / target) outside the tolerance, through the HPA's
`behavior` (stabilization, rate limits). Sources: docs/sources.md#keda.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.hpa import DEFAULT_SCALE_DOWN, DEFAULT_SCALE_UP, HpaPolicy, HpaState, ScalingRules
from capsim.autoscale.view import FleetView


class KedaPolicy(PolicyBase):
    """`autoscaling: {kind: keda, ...}`. `metric: queue_length` is the requests waiting (a queue
    trigger); `concurrency` the requests in flight."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["keda"] = "keda"
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=100, ge=1)
    metric: Literal["queue_length", "concurrency"] = "queue_length"
    target: float = Field(gt=0, description="AverageValue target: metric per replica")
    activation_threshold: float = Field(default=0.0, ge=0)
    polling_interval_s: float = Field(default=30.0, gt=0)
    cooldown_period_s: float = Field(default=300.0, ge=0)
    hpa_sync_period_s: float = Field(default=15.0, gt=0)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


    @property
    def period_s(self) -> float:
        """The controller asks at the HPA's sync period; KEDA's own polls fall on multiples of theirs."""
        return self.hpa_sync_period_s

    def make_state(self) -> KedaState:
        """Fresh operator + HPA memory for one run."""
        return KedaState(self)


class KedaState:
    """KEDA's activation memory plus the generated HPA's behavior memory."""

    def __init__(self, policy: KedaPolicy) -> None:
        self.policy = policy
        hpa = HpaPolicy(
            min_replicas=max(policy.min_replicas, 1),
            max_replicas=policy.max_replicas,
            metric="queue_length" if policy.metric == "queue_length" else "concurrency",
            target=policy.target,
            tolerance=policy.tolerance,
            sync_period_s=policy.hpa_sync_period_s,
            scale_up=policy.scale_up,
            scale_down=policy.scale_down,
        )
        self.hpa = HpaState(hpa)
        self.last_active_s: float | None = None
        self.next_poll_s = 0.0
        self.active = False

    def _metric(self, view: FleetView, window_s: float) -> float:
        name = "queue" if self.policy.metric == "queue_length" else "concurrency"
        value = view.samples.mean(name, window_s, view.now_s)
        return 0.0 if math.isnan(value) else value

    def decide(self, view: FleetView) -> int:
        """The desired replica count at `view.now_s`."""
        policy = self.policy
        if view.now_s + 1e-9 >= self.next_poll_s:
            # The operator's poll reads the metric as it is now (a point read, like a queue length).
            self.next_poll_s = view.now_s + policy.polling_interval_s
            if self._metric(view, 1.0) > policy.activation_threshold:
                self.active = True
                self.last_active_s = view.now_s
            elif self.last_active_s is None or view.now_s - self.last_active_s >= policy.cooldown_period_s:
                self.active = False
        if policy.min_replicas == 0 and not self.active:
            return 0
        if view.current == 0:
            return max(1, policy.min_replicas)
        # AverageValue: desired = ceil(metric / target), skipped inside the tolerance.
        metric = self._metric(view, policy.hpa_sync_period_s)
        ratio = metric / (policy.target * view.current)
        raw = view.current if abs(1.0 - ratio) <= policy.tolerance else math.ceil(metric / policy.target)
        raw = min(max(raw, max(policy.min_replicas, 1)), policy.max_replicas)
        desired = self.hpa.normalize(view.now_s, view.current, raw)
        if desired != view.current:
            self.hpa.scale_events.append((view.now_s, desired - view.current))
        return desired

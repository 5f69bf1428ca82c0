"""Kubernetes HorizontalPodAutoscaler (autoscaling/v2), as kube-controller-manager computes it.

Every `sync_period_s` (15 s): a per-pod metric averaged over the scrape window is compared with the
target; `desired = ceil(ratio × readyPods)` outside the tolerance (0.1), with pods that have no
metrics yet (still starting) counted at 0 on scale-up and at the target on scale-down, and no change
if that reverses the direction. The raw recommendation then goes through `behavior`: stabilization
windows (scale-up min over 0 s, scale-down max over 300 s) and rate-limit policies (up: +100% or +4
pods per 15 s, whichever is more; down: −100% per 15 s), then [min, max]. Sources and exact rules:
docs/sources.md#kubernetes-hpa (replica_calculator.go, horizontal.go).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.view import FleetView
from capsim.input_model import InputModel


class ScalingPolicy(InputModel):
    """One rate limit: at most `value` pods (or percent) of change per `period_s`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["Pods", "Percent"]
    value: int = Field(gt=0)
    period_s: float = Field(gt=0, le=1800)


class ScalingRules(InputModel):
    """`behavior.scaleUp` or `behavior.scaleDown`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stabilization_window_s: float = Field(ge=0, le=3600)
    policies: list[ScalingPolicy] = Field(min_length=1)
    select_policy: Literal["Max", "Min", "Disabled"] = "Max"


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0,
    policies=[ScalingPolicy(type="Percent", value=100, period_s=15), ScalingPolicy(type="Pods", value=4, period_s=15)],
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=300, policies=[ScalingPolicy(type="Percent", value=100, period_s=15)]
)

HpaMetric = Literal["utilization", "concurrency", "rps", "queue_length"]


class HpaPolicy(PolicyBase):
    """`autoscaling: {kind: hpa, ...}`. The metric is a per-pod average: `utilization` is the busy
    fraction of a replica's executors (like CPU or GPU utilization), `concurrency` the requests in
    flight per pod, `rps` arrivals per second per pod, `queue_length` waiting requests per pod."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["hpa"] = "hpa"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    metric: HpaMetric = "utilization"
    target: float = Field(gt=0, description="per-pod target of the metric (utilization as a fraction)")
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    sync_period_s: float = Field(default=15.0, gt=0)
    metric_window_s: float = Field(default=15.0, gt=0, description="averaging window of the scraped metric")
    metric_delay_s: float = Field(default=0.0, ge=0, description="age of the newest metric when the HPA reads it")
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


    @property
    def period_s(self) -> float:
        """How often the controller asks this policy."""
        return self.sync_period_s

    def per_pod_total(self, view: FleetView) -> float:
        """The metric summed over ready pods, averaged over the scrape window (NaN if no samples)."""
        end = view.now_s - self.metric_delay_s
        samples = view.samples
        if self.metric == "utilization":
            return samples.mean("busy", self.metric_window_s, end) / view.executors_per_replica
        if self.metric == "concurrency":
            return samples.mean("concurrency", self.metric_window_s, end)
        if self.metric == "queue_length":
            return samples.mean("queue", self.metric_window_s, end)
        return samples.rate_per_s(self.metric_window_s, end)

    def make_state(self) -> HpaState:
        """Fresh controller memory for one run."""
        return HpaState(self)


def replica_count_for(
    total: float, target: float, ready: int, missing: int, current: int, tolerance: float
) -> int:
    """replica_calculator.go for a per-pod average metric: the raw recommendation."""
    if ready == 0:
        return current
    ratio = (total / ready) / target
    if missing == 0:
        return current if abs(1.0 - ratio) <= tolerance else math.ceil(ratio * ready)
    if abs(1.0 - ratio) <= tolerance:
        return current
    # Pods without metrics count as using the target on scale-down and nothing on scale-up.
    filled = total + (missing * target if ratio < 1.0 else 0.0)
    new_ratio = filled / (target * (ready + missing))
    if abs(1.0 - new_ratio) <= tolerance or (ratio > 1.0) != (new_ratio > 1.0):
        return current
    return math.ceil(new_ratio * (ready + missing))


class HpaState:
    """The HPA controller's memory: raw recommendations and scale events, for `behavior`."""

    def __init__(self, policy: HpaPolicy) -> None:
        self.policy = policy
        self.recommendations: list[tuple[float, int]] = []
        self.scale_events: list[tuple[float, int]] = []  # (time, replicas added (+) or removed (−))

    def decide(self, view: FleetView) -> int:
        """The replica count the HPA sets at `view.now_s`."""
        policy = self.policy
        current = view.current
        if current == 0 and policy.min_replicas > 0:
            return policy.min_replicas
        total = policy.per_pod_total(view)
        raw = current if math.isnan(total) else replica_count_for(
            total, policy.target, view.ready, view.not_ready, current, policy.tolerance
        )  # fmt: skip
        raw = min(max(raw, policy.min_replicas), policy.max_replicas)
        desired = self.normalize(view.now_s, current, raw)
        if desired != current:
            self.scale_events.append((view.now_s, desired - current))
        return desired

    def normalize(self, now_s: float, current: int, raw: int) -> int:
        """normalizeDesiredReplicasWithBehaviors: stabilize, then rate-limit, then clamp."""
        policy = self.policy
        self.recommendations.append((now_s, raw))
        horizon = max(policy.scale_up.stabilization_window_s, policy.scale_down.stabilization_window_s)
        # A recommendation counts while strictly newer than the window's start (timestamp.After(cutoff));
        # the one just made always counts.
        self.recommendations = [(t, r) for t, r in self.recommendations[:-1] if t > now_s - horizon]
        self.recommendations.append((now_s, raw))
        up = [r for t, r in self.recommendations if t > now_s - policy.scale_up.stabilization_window_s or t == now_s]
        down = [
            r for t, r in self.recommendations if t > now_s - policy.scale_down.stabilization_window_s or t == now_s
        ]
        up_rec = min(up or [raw])
        down_rec = max(down or [raw])
        stabilized = current
        if stabilized < up_rec:
            stabilized = up_rec
        if stabilized > down_rec:
            stabilized = down_rec
        if stabilized > current:
            limited = min(stabilized, self._limit(now_s, current, policy.scale_up, up=True))
        elif stabilized < current:
            limited = max(stabilized, self._limit(now_s, current, policy.scale_down, up=False))
        else:
            limited = current
        return min(max(limited, policy.min_replicas), policy.max_replicas)

    def _limit(self, now_s: float, current: int, rules: ScalingRules, up: bool) -> int:
        if rules.select_policy == "Disabled":
            return current
        proposals = []
        for rate in rules.policies:
            since = now_s - rate.period_s
            added = sum(d for t, d in self.scale_events if t > since and d > 0)
            removed = -sum(d for t, d in self.scale_events if t > since and d < 0)
            period_start = current - added + removed
            if up:
                proposal = period_start + rate.value if rate.type == "Pods" else math.ceil(
                    period_start * (1 + rate.value / 100.0)
                )  # fmt: skip
            else:
                proposal = period_start - rate.value if rate.type == "Pods" else int(
                    period_start * (1 - rate.value / 100.0)
                )  # fmt: skip
            proposals.append(proposal)
        if up:
            limit = max(proposals) if rules.select_policy == "Max" else min(proposals)
            return max(limit, current)
        limit = min(proposals) if rules.select_policy == "Max" else max(proposals)
        return min(limit, current)

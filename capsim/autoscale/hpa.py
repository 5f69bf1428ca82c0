"""Kubernetes HorizontalPodAutoscaler (autoscaling/v2), as kube-controller-manager computes it.

Every `sync_period_s` (15 s): a per-pod metric averaged over the scrape window is compared with the
target (replica_calculator.go): `desired = ceil(ratio × readyPods)` outside the tolerance (0.1); pods
still starting (Pending or not ready) are left out, and counted at 0 only on a scale-up; no change if
that would reverse the direction. A utilization is compared in whole percent, as Kubernetes
truncates it. The raw recommendation is then normalized (horizontal.go), by one of two code paths:

- without `behavior` (neither `scale_up` nor `scale_down` set, Kubernetes' default): the largest
  recommendation of the last 300 s (the controller's downscale stabilization), at most
  max(2 × current, 4), then [min, max];
- with `behavior`: stabilization windows (scale-up min over 0 s, scale-down max over 300 s by
  default) and rate-limit policies (up: +100% or +4 pods per 15 s, whichever is more; down: −100% per
  15 s by default) from recorded scale events, then [min, max].

The first reconcile also records the current replica count as a recommendation, so an HPA never
scales down within its first stabilization window. Sources and exact rules:
docs/sources.md#kubernetes-hpa (replica_calculator.go, horizontal.go).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

from pydantic import ConfigDict, Field, model_validator

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
    tolerance: float | None = Field(
        default=None, ge=0, description="this direction's tolerance (KEP-4951); unset: the HPA's `tolerance`"
    )


DEFAULT_SCALE_UP = ScalingRules(
    stabilization_window_s=0,
    policies=[ScalingPolicy(type="Percent", value=100, period_s=15), ScalingPolicy(type="Pods", value=4, period_s=15)],
)
DEFAULT_SCALE_DOWN = ScalingRules(
    stabilization_window_s=300, policies=[ScalingPolicy(type="Percent", value=100, period_s=15)]
)

HpaMetric = Literal["utilization", "concurrency", "rps", "queue_length", "running", "kv_cache_utilization"]
LLM_ONLY_METRICS = ("running", "kv_cache_utilization")  # read from LLM engines (serving.mode: llm) only


class MetricTarget(InputModel):
    """One entry of `metrics`: a per-pod metric and its target."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    metric: HpaMetric
    target: float = Field(gt=0, description="per-pod target of the metric (utilization as a fraction)")


class HpaPolicy(PolicyBase):
    """`autoscaling: {kind: hpa, ...}`. The metric is a per-pod average: `utilization` is the busy
    fraction of a replica's executors (like CPU or GPU utilization), `concurrency` the requests in
    flight per pod, `rps` arrivals per second per pod, `queue_length` waiting requests per pod. LLM
    engines add `running` (vllm:num_requests_running) and `kv_cache_utilization` (vllm:
    kv_cache_usage_perc, a fraction) per pod; on an LLM fleet `queue_length` is
    vllm:num_requests_waiting and `utilization` the share of time an engine runs a step."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["hpa"] = "hpa"
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(ge=1)
    metric: HpaMetric = "utilization"
    target: float | None = Field(
        default=None, gt=0, description="per-pod target of the metric (utilization as a fraction)"
    )
    metrics: list[MetricTarget] = Field(
        default_factory=list, description="several metrics instead of metric/target: the largest recommendation wins"
    )
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    sync_period_s: float = Field(default=15.0, gt=0)
    metric_window_s: float = Field(default=15.0, gt=0, description="averaging window of the scraped metric")
    metric_delay_s: float = Field(default=0.0, ge=0, description="age of the newest metric when the HPA reads it")
    scale_up: ScalingRules | None = Field(default=None, description="behavior.scaleUp; unset: Kubernetes' defaults")
    scale_down: ScalingRules | None = Field(default=None, description="behavior.scaleDown; unset: Kubernetes' defaults")


    @model_validator(mode="after")
    def _one_way_to_give_targets(self) -> HpaPolicy:
        if self.metrics and (self.target is not None or "metric" in self.model_fields_set):
            raise ValueError("give either `metric` and `target`, or `metrics`, not both")
        if not self.metrics and self.target is None:
            raise ValueError("`target` is required (or `metrics`, a list of {metric, target})")
        return self

    @property
    def period_s(self) -> float:
        """How often the controller asks this policy."""
        return self.sync_period_s

    def llm_only_metrics(self) -> list[str]:
        """The targets' metrics that only LLM engines give."""
        return [t.metric for t in self.targets if t.metric in LLM_ONLY_METRICS]

    @property
    def targets(self) -> list[MetricTarget]:
        """The metrics the HPA scales on: `metrics`, or the one `metric` with its `target`."""
        if self.metrics:
            return self.metrics
        assert self.target is not None  # the validator guarantees it
        return [MetricTarget(metric=self.metric, target=self.target)]

    def per_pod_total(self, view: FleetView, metric: HpaMetric | None = None) -> float:
        """A metric (default: `metric`) summed over ready pods, averaged over the scrape window (NaN if
        no samples)."""
        metric = metric or self.metric
        end = view.now_s - self.metric_delay_s
        samples = view.samples
        if metric == "utilization":
            return samples.mean("busy", self.metric_window_s, end) / view.executors_per_replica
        if metric == "concurrency":
            return samples.mean("concurrency", self.metric_window_s, end)
        if metric == "queue_length":
            return samples.mean("queue", self.metric_window_s, end)
        if metric == "running":
            return samples.mean("running", self.metric_window_s, end)
        if metric == "kv_cache_utilization":
            return samples.mean("kv_used", self.metric_window_s, end)
        return samples.rate_per_s(self.metric_window_s, end)

    @property
    def tolerances(self) -> Tolerances:
        """The scale-down and scale-up tolerances: `behavior`'s per-direction ones (KEP-4951,
        tolerancesForHpa) where given, else the controller's `tolerance` (0.1)."""
        down = self.scale_down.tolerance if self.scale_down is not None else None
        up = self.scale_up.tolerance if self.scale_up is not None else None
        return Tolerances(self.tolerance if down is None else down, self.tolerance if up is None else up)

    @property
    def has_behavior(self) -> bool:
        """Whether `behavior` is set (either direction): Kubernetes then takes its behavior code path."""
        return self.scale_up is not None or self.scale_down is not None

    @property
    def up_rules(self) -> ScalingRules:
        """behavior.scaleUp, Kubernetes' default where only scaleDown is given."""
        return self.scale_up or DEFAULT_SCALE_UP

    @property
    def down_rules(self) -> ScalingRules:
        """behavior.scaleDown, Kubernetes' default where only scaleUp is given."""
        return self.scale_down or DEFAULT_SCALE_DOWN

    def make_state(self) -> HpaState:
        """Fresh controller memory for one run."""
        return HpaState(self)


DOWNSCALE_STABILIZATION_S = 300.0
"""kube-controller-manager's `--horizontal-pod-autoscaler-downscale-stabilization` (5 min): the
scale-down window of an HPA without `behavior`."""
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
"""Without `behavior`, one sync may raise the replicas to at most max(2 × current, 4)."""


class Tolerances(NamedTuple):
    """The band around a usage ratio of 1 where the HPA does not scale: [1 − down, 1 + up]."""

    down: float
    up: float

    def within(self, ratio: float) -> bool:
        """Tolerances.isWithin."""
        return 1.0 - self.down <= ratio <= 1.0 + self.up


def _usage_ratio(total: float, pods: int, target: float, utilization: bool) -> float:
    """The metric per pod over the target. A utilization is truncated to whole percent first, as
    GetResourceUtilizationRatio does in integer milli-units."""
    if utilization:
        # Kubernetes' targets are whole percent: round away the float error of 100 × 0.3.
        return math.floor(100.0 * total / pods + 1e-9) / round(100.0 * target, 9)
    return (total / pods) / target  # the per-pod average over the target, in GetMetricUsageRatio's order


def replica_count_for(
    ready_total: float,
    target: float,
    ready: int,
    current: int,
    tolerance: float | Tolerances,
    unready: int = 0,
    missing: int = 0,
    utilization: bool = False,
) -> int | None:
    """The raw recommendation of replica_calculator.go for a per-pod average (GetResourceReplicas
    when `utilization`, calcPlainMetricReplicas otherwise).

    `ready_total` is the metric summed over the `ready` pods that report it. `unready` pods (Pending,
    or a CPU-like metric's pods not yet ready) are left out, and counted at 0 only on a scale-up.
    `missing` pods (running, no metric) count at 0 on a scale-up and at the target on a scale-down
    (a utilization: at max(100%, target)). No change inside the tolerance, or if the pods left out
    would reverse the direction. None when no ready pod reports the metric: the HPA does not scale.
    """
    if ready == 0:
        return None
    tolerances = tolerance if isinstance(tolerance, Tolerances) else Tolerances(tolerance, tolerance)
    ratio = _usage_ratio(ready_total, ready, target, utilization)
    scale_up_with_unready = unready > 0 and ratio > 1.0
    if not scale_up_with_unready and missing == 0:
        if tolerances.within(ratio):
            return current
        return math.ceil(ratio * ready)
    total, pods = ready_total, ready
    if missing > 0:
        if ratio < 1.0:
            total += missing * (max(1.0, target) if utilization else target)
            pods += missing
        elif ratio > 1.0 or not utilization:
            pods += missing  # at 0 (a pod metric counts them even at a ratio of exactly 1)
    if scale_up_with_unready:
        pods += unready
    new_ratio = _usage_ratio(total, pods, target, utilization)
    if tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return current
    new = math.ceil(new_ratio * pods)
    if (new_ratio < 1.0 and new > current) or (new_ratio > 1.0 and new < current):
        return current
    return new


def replicas_for_metrics(proposals: list[int | None], current: int) -> int | None:
    """computeReplicasForMetrics: the largest proposal of the metrics that have one (None: no
    metric value). None — no scaling — when no metric has a value, or when some have none and the
    others would scale down."""
    valid = [p for p in proposals if p is not None]
    if not valid:
        return None
    desired = max(valid)
    if len(valid) < len(proposals) and desired < current:
        return None
    return desired


def convert_desired_replicas_with_rules(current: int, desired: int, min_replicas: int, max_replicas: int) -> int:
    """convertDesiredReplicasWithRules: the bounds of an HPA without `behavior`, its scale-up capped at
    max(2 × current, 4) per sync."""
    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    maximum = min(max_replicas, scale_up_limit)
    if desired < min_replicas:
        return min_replicas
    return min(desired, maximum)


ScaleEvent = tuple[float, int]  # (time, replicas added, or removed, > 0)


def _change_in_period(events: list[ScaleEvent], now_s: float, period_s: float) -> int:
    """getReplicasChangePerPeriod: the changes strictly after now − period."""
    return sum(change for t, change in events if t > now_s - period_s)


def scale_limit(
    current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: ScalingRules, now_s: float,
    up: bool,
) -> int:
    """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors: each policy's
    bound from the replicas at the start of its period; `select_policy` Max takes the largest change."""
    if rules.select_policy == "Disabled":
        return current
    proposals = []
    for rate in rules.policies:
        start = current - _change_in_period(up_events, now_s, rate.period_s) + _change_in_period(
            down_events, now_s, rate.period_s
        )  # fmt: skip
        if up:
            # Rounded up, or a percent policy might never add a pod (Go's float64 arithmetic, same order).
            proposal = start + rate.value if rate.type == "Pods" else math.ceil(start * (1 + rate.value / 100))
        else:
            proposal = start - rate.value if rate.type == "Pods" else int(start * (1 - rate.value / 100))
        proposals.append(proposal)
    largest_change = rules.select_policy == "Max"
    if up:
        return max(proposals) if largest_change else min(proposals)
    return min(proposals) if largest_change else max(proposals)


def convert_desired_replicas_with_behavior_rate(
    current: int, desired: int, min_replicas: int, max_replicas: int, up_rules: ScalingRules,
    down_rules: ScalingRules, up_events: list[ScaleEvent], down_events: list[ScaleEvent], now_s: float,
) -> int:
    """convertDesiredReplicasWithBehaviorRate: the rate limits of `behavior`, then [min, max]."""
    if desired > current:
        limit = max(scale_limit(current, up_events, down_events, up_rules, now_s, up=True), current)
        return min(desired, max_replicas, limit)
    if desired < current:
        limit = min(scale_limit(current, up_events, down_events, down_rules, now_s, up=False), current)
        return max(desired, min_replicas, limit)
    return desired


class HpaState:
    """The HPA controller's memory: recommendations (for stabilization) and, with `behavior`, scale
    events (for the rate limits)."""

    def __init__(self, policy: HpaPolicy) -> None:
        self.policy = policy
        self.recommendations: list[tuple[float, int]] | None = None  # None until the first reconcile
        self.up_events: list[ScaleEvent] = []
        self.down_events: list[ScaleEvent] = []

    def decide(self, view: FleetView) -> int:
        """The replica count the HPA sets at `view.now_s`."""
        policy = self.policy

        def proposal(spec: MetricTarget) -> int | None:
            total = policy.per_pod_total(view, spec.metric)
            if math.isnan(total):
                return None
            return replica_count_for(
                total, spec.target, view.ready, view.current, policy.tolerances, unready=view.not_ready,
                utilization=spec.metric == "utilization",
            )  # fmt: skip

        return self.reconcile(
            view.now_s, view.current, lambda: replicas_for_metrics([proposal(t) for t in policy.targets], view.current)
        )

    def reconcile(self, now_s: float, current: int, raw: Callable[[], int | None]) -> int:
        """reconcileAutoscaler: the replica count set at `now_s`, given how to compute the raw
        recommendation (None: no metric, no change)."""
        policy = self.policy
        if self.recommendations is None:  # recordInitialRecommendation
            self.recommendations = [(now_s, current)]
        if current == 0 and policy.min_replicas != 0:
            return 0  # "scaling is disabled since the replica count of the target is zero"
        if current > policy.max_replicas:
            desired = policy.max_replicas
        elif current < policy.min_replicas:
            desired = policy.min_replicas
        else:
            recommendation = raw()
            if recommendation is None:
                return current
            desired = self.normalize(now_s, current, recommendation)
        if desired != current:
            self.record_scale_event(now_s, current, desired)
        return desired

    def normalize(self, now_s: float, current: int, raw: int) -> int:
        """normalizeDesiredReplicas (no `behavior`) or normalizeDesiredReplicasWithBehaviors."""
        policy = self.policy
        if not policy.has_behavior:
            stabilized = self.stabilize(now_s, raw)
            return convert_desired_replicas_with_rules(current, stabilized, policy.min_replicas, policy.max_replicas)
        stabilized = self.stabilize_with_behaviors(now_s, current, raw)
        return convert_desired_replicas_with_behavior_rate(
            current, stabilized, policy.min_replicas, policy.max_replicas, policy.up_rules, policy.down_rules,
            self.up_events, self.down_events, now_s,
        )  # fmt: skip

    def stabilize(self, now_s: float, raw: int) -> int:
        """stabilizeRecommendation (no `behavior`): the largest recommendation not older than the
        controller's downscale stabilization window (one made exactly that long ago still counts)."""
        cutoff = now_s - DOWNSCALE_STABILIZATION_S
        history = self.recommendations or []
        best = max([raw] + [r for t, r in history if not t < cutoff])
        old = [i for i, (t, _) in enumerate(history) if t < cutoff]
        self.recommendations = self._store(history, old, (now_s, raw))
        return best

    def stabilize_with_behaviors(self, now_s: float, current: int, raw: int) -> int:
        """stabilizeRecommendationWithBehaviors: a recommendation counts while strictly newer than
        now − window; scale up to at most the window's smallest, down to at least its largest."""
        up_cutoff = now_s - self.policy.up_rules.stabilization_window_s
        down_cutoff = now_s - self.policy.down_rules.stabilization_window_s
        history = self.recommendations or []
        up = min([raw] + [r for t, r in history if t > up_cutoff])
        down = max([raw] + [r for t, r in history if t > down_cutoff])
        old = [i for i, (t, _) in enumerate(history) if t < up_cutoff and t < down_cutoff]
        self.recommendations = self._store(history, old, (now_s, raw))
        return min(max(current, up), down)

    @staticmethod
    def _store(
        history: list[tuple[float, int]], old: list[int], record: tuple[float, int]
    ) -> list[tuple[float, int]]:
        """Record a recommendation in the slot of the last one too old to count, else append (as
        Kubernetes does; the list stays as long as the window needs)."""
        if old:
            history[old[-1]] = record
        else:
            history.append(record)
        return history

    def record_scale_event(self, now_s: float, current: int, desired: int) -> None:
        """storeScaleEvent: kept only with `behavior`, and only within the longest policy period."""
        policy = self.policy
        if not policy.has_behavior:
            return
        up = desired > current
        events, rules = (self.up_events, policy.up_rules) if up else (self.down_events, policy.down_rules)
        longest_s = max(rate.period_s for rate in rules.policies)
        events[:] = [(t, change) for t, change in events if not t < now_s - longest_s]
        events.append((now_s, abs(desired - current)))

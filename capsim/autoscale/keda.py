"""KEDA ScaledObject: queue-driven scaling with an HPA underneath.

KEDA's operator polls the trigger every `polling_interval_s` (30 s) and owns 0↔1 (the scale
executor): the workload is active while the metric exceeds `activation_threshold`; at zero an active
poll scales it to max(min_replicas, 1); an idle poll scales it to zero (min_replicas 0), or to
`idle_replica_count` when set, only once the last active poll is strictly more than
`cooldown_period_s` (300 s) old, and raises it to `min_replicas` if below. Between 1 and N, the
generated HPA (min max(min_replicas, 1)) scales on the metric as an AverageValue target:
desired = ceil(metric / target) outside the tolerance, normalized like any HPA (`behavior` is unset
unless `scale_up` / `scale_down` are given, as KEDA copies it only from
`advanced.horizontalPodAutoscalerConfig`).

The trigger's metric fetch fails inside `metric_outages` (windows of simulated time). Every fetch, the
operator's poll and the HPA's query alike, counts: a failed one adds one to the consecutive failures,
a good one resets them. A failed fetch leaves the HPA where it is and makes the poll inactive and in
error; with `fallback` that poll scales straight to `fallback.replicas`, and once the failures exceed
`fallback.failure_threshold` the fetch reports `fallback_replicas × target` instead (active), which
the HPA turns into that many replicas (pkg/fallback/fallback.go). Sources: docs/sources.md#keda.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.hpa import HpaPolicy, HpaState, ScalingRules, Tolerances
from capsim.autoscale.view import FleetView
from capsim.input_model import InputModel


class MetricOutage(InputModel):
    """A window of simulated time [start_s, end_s) during which the trigger's metric fetch fails
    (the metric source is unreachable or answers with an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> MetricOutage:
        if self.end_s <= self.start_s:
            raise ValueError(f"end_s ({self.end_s}) must be > start_s ({self.start_s})")
        return self


class KedaFallback(InputModel):
    """ScaledObject `spec.fallback`: the replicas to run while the metric fetch keeps failing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    failure_threshold: int = Field(ge=0, description="consecutive failed fetches tolerated before falling back")
    replicas: int = Field(ge=0, description="fallback.replicas")
    behavior: Literal["static", "current_replicas", "current_replicas_if_higher", "current_replicas_if_lower"] = Field(
        default="static",
        description="static: `replicas`; current_replicas: keep the current count; _if_higher / _if_lower: the "
        "larger / smaller of the current count and `replicas`",
    )


def fallback_replicas(fallback: KedaFallback, current: int) -> int:
    """doFallback: the replica count the fallback metric stands for, by `behavior` (`current` is the
    scale target's spec.replicas)."""
    if fallback.behavior == "current_replicas":
        return current
    if fallback.behavior == "current_replicas_if_higher":
        return max(current, fallback.replicas)
    if fallback.behavior == "current_replicas_if_lower":
        return min(current, fallback.replicas)
    return fallback.replicas


class KedaPolicy(PolicyBase):
    """`autoscaling: {kind: keda, ...}`. `metric: queue_length` is the requests waiting (a queue
    trigger; on LLM engines vllm:num_requests_waiting); `concurrency` the requests in flight;
    `running` (LLM engines only) the requests running, vllm:num_requests_running as in KServe's
    KEDA example."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["keda"] = "keda"
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=100, ge=1)
    metric: Literal["queue_length", "concurrency", "running"] = "queue_length"
    target: float = Field(gt=0, description="AverageValue target: metric per replica")
    activation_threshold: float = Field(default=0.0, ge=0)
    polling_interval_s: float = Field(default=30.0, gt=0)
    cooldown_period_s: float = Field(default=300.0, ge=0)
    hpa_sync_period_s: float = Field(default=15.0, gt=0)
    tolerance: float = Field(default=0.1, ge=0, lt=1)
    scale_up: ScalingRules | None = Field(default=None, description="the HPA's behavior.scaleUp; unset by default")
    scale_down: ScalingRules | None = Field(default=None, description="the HPA's behavior.scaleDown; unset by default")
    idle_replica_count: int | None = Field(
        default=None, ge=0, description="replicas while idle (below min_replicas; KEDA supports only 0)"
    )
    fallback: KedaFallback | None = Field(default=None, description="spec.fallback; unset: no fallback")
    metric_outages: list[MetricOutage] = Field(
        default_factory=list, description="windows of simulated time during which the metric fetch fails"
    )

    @model_validator(mode="after")
    def _idle_below_min(self) -> KedaPolicy:
        # CheckReplicaCountBoundsAreValid
        if self.idle_replica_count is not None and self.idle_replica_count >= self.min_replicas:
            raise ValueError(
                f"idle_replica_count ({self.idle_replica_count}) must be < min_replicas ({self.min_replicas})"
            )
        return self

    def llm_only_metrics(self) -> list[str]:
        """`running` is read from LLM engines only."""
        return ["running"] if self.metric == "running" else []

    @property
    def period_s(self) -> float:
        """The controller asks at the HPA's sync period; KEDA's own polls fall on multiples of theirs."""
        return self.hpa_sync_period_s

    def make_state(self) -> KedaState:
        """Fresh operator + HPA memory for one run."""
        return KedaState(self)


def average_value_replicas(metric: float, target: float, current: int, tolerance: float | Tolerances) -> int:
    """GetExternalPerPodMetricReplicas (an AverageValue target): ceil(metric / target), unless
    metric / (target × current) is within the tolerance."""
    tolerances = tolerance if isinstance(tolerance, Tolerances) else Tolerances(tolerance, tolerance)
    ratio = metric / (target * current)
    return current if tolerances.within(ratio) else math.ceil(metric / target)


class KedaState:
    """KEDA's scale executor memory (the last active poll) plus the generated HPA's memory."""

    def __init__(self, policy: KedaPolicy) -> None:
        self.policy = policy
        hpa = HpaPolicy(
            min_replicas=max(policy.min_replicas, 1),  # GetHPAMinReplicas
            max_replicas=policy.max_replicas,
            metric=policy.metric,
            target=policy.target,
            tolerance=policy.tolerance,
            sync_period_s=policy.hpa_sync_period_s,
            scale_up=policy.scale_up,
            scale_down=policy.scale_down,
        )
        self.hpa = HpaState(hpa)
        self.last_active_s: float | None = None
        self.next_poll_s = 0.0
        self.created_s = 0.0  # the ScaledObject exists from the start of the run
        self.failures = 0  # consecutive failed metric fetches (status.health[metric].numberOfFailures)

    def _metric(self, view: FleetView, window_s: float) -> float:
        name = {"queue_length": "queue", "concurrency": "concurrency", "running": "running"}[self.policy.metric]
        value = view.samples.mean(name, window_s, view.now_s)
        return 0.0 if math.isnan(value) else value

    def metric_fails(self, now_s: float) -> bool:
        """Whether a fetch of the trigger's metric at `now_s` fails (inside a `metric_outages` window)."""
        return any(o.start_s <= now_s < o.end_s for o in self.policy.metric_outages)

    def metric_with_fallback(self, value: float | None, current: int) -> tuple[float | None, bool]:
        """GetMetricsWithFallback for one fetch (`value` None: it failed): (the metric reported, None
        when the error stands; whether it is the fallback's). A good fetch resets the failures, a
        failed one counts (health is tracked only with a fallback); past `failure_threshold` failures
        the fetch reports fallback_replicas × target, which an AverageValue HPA turns into that many
        replicas."""
        fallback = self.policy.fallback
        if fallback is None:
            return value, False
        if value is not None:
            self.failures = 0
            return value, False
        self.failures += 1
        if self.failures <= fallback.failure_threshold:
            return None, False
        return fallback_replicas(fallback, current) * self.policy.target, True

    def _fetch(self, view: FleetView, window_s: float) -> tuple[float | None, bool]:
        value = None if self.metric_fails(view.now_s) else self._metric(view, window_s)
        return self.metric_with_fallback(value, view.current)

    def request_scale(self, now_s: float, current: int, active: bool, error: bool = False) -> int:
        """scaleExecutor.RequestScale for one poll: the replica count KEDA itself sets (`current`
        when it leaves scaling to the HPA). `error`: the poll's metric fetch failed."""
        policy = self.policy
        idle = policy.idle_replica_count
        if not active and error and policy.fallback is not None and policy.fallback.replicas != 0:
            return policy.fallback.replicas  # doFallbackScaling: no cooldown, LastActiveTime untouched
        if active:
            self.last_active_s = now_s
            if current == 0 or (idle is not None and current < policy.min_replicas):
                return max(policy.min_replicas, 1)  # scaleFromZeroOrIdle
            return current
        if (idle is not None and current > idle) or (current > 0 and policy.min_replicas == 0):
            # scaleToZeroOrIdle: only once the last activity is strictly more than the cooldown ago
            # (LastActiveTime + cooldown Before now; never active: creation + initial cooldown 0).
            since = self.last_active_s if self.last_active_s is not None else self.created_s
            cooldown_s = policy.cooldown_period_s if self.last_active_s is not None else 0.0
            rest = idle if idle is not None else policy.min_replicas
            return rest if since + cooldown_s < now_s else current
        if idle is None and current < policy.min_replicas:
            return policy.min_replicas
        return current

    def decide(self, view: FleetView) -> int:
        """The desired replica count at `view.now_s`: KEDA's poll when one is due, else the HPA."""
        policy = self.policy
        current = view.current
        if view.now_s + 1e-9 >= self.next_poll_s:
            # The operator's poll reads the metric as it is now (a point read, like a queue length).
            self.next_poll_s = view.now_s + policy.polling_interval_s
            value, falling_back = self._fetch(view, 1.0)
            # A fallback metric makes the trigger active (isActiveOrFallback); a failed fetch is an error.
            active = falling_back or (value is not None and value > policy.activation_threshold)
            desired = self.request_scale(view.now_s, current, active, error=value is None)
            if desired != current:
                return desired
        # The HPA's AverageValue over its sync period (it does nothing at zero: scaling disabled; a
        # failed fetch leaves it where it is). It fetches only when it computes a recommendation.
        tolerances = self.hpa.policy.tolerances

        def recommend() -> int | None:
            metric, _ = self._fetch(view, policy.hpa_sync_period_s)
            return None if metric is None else average_value_replicas(metric, policy.target, current, tolerances)

        return self.hpa.reconcile(view.now_s, current, recommend)

"""KEDA ScaledObject: queue-driven scaling with an HPA underneath.

KEDA's operator polls the trigger every `polling_interval_s` (30 s) and owns 0↔1 (the scale
executor): the workload is active while the metric exceeds `activation_threshold`; at zero an active
poll scales it to max(min_replicas, 1); an idle poll scales it to zero (min_replicas 0), or to
`idle_replica_count` when set, only once the last active poll is strictly more than
`cooldown_period_s` (300 s) old, and raises it to `min_replicas` if below. Between 1 and N, the
generated HPA (min max(min_replicas, 1)) scales on the metric as an AverageValue target:
desired = ceil(metric / target) outside the tolerance, normalized like any HPA (`behavior` is unset
unless `scale_up` / `scale_down` are given, as KEDA copies it only from
`advanced.horizontalPodAutoscalerConfig`). Sources: docs/sources.md#keda.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from capsim.autoscale.base import PolicyBase
from capsim.autoscale.hpa import HpaPolicy, HpaState, ScalingRules, Tolerances
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
    scale_up: ScalingRules | None = Field(default=None, description="the HPA's behavior.scaleUp; unset by default")
    scale_down: ScalingRules | None = Field(default=None, description="the HPA's behavior.scaleDown; unset by default")
    idle_replica_count: int | None = Field(
        default=None, ge=0, description="replicas while idle (below min_replicas; KEDA supports only 0)"
    )

    @model_validator(mode="after")
    def _idle_below_min(self) -> KedaPolicy:
        # CheckReplicaCountBoundsAreValid
        if self.idle_replica_count is not None and self.idle_replica_count >= self.min_replicas:
            raise ValueError(
                f"idle_replica_count ({self.idle_replica_count}) must be < min_replicas ({self.min_replicas})"
            )
        return self


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
        self.created_s = 0.0  # the ScaledObject exists from the start of the run

    def _metric(self, view: FleetView, window_s: float) -> float:
        name = "queue" if self.policy.metric == "queue_length" else "concurrency"
        value = view.samples.mean(name, window_s, view.now_s)
        return 0.0 if math.isnan(value) else value

    def request_scale(self, now_s: float, current: int, active: bool) -> int:
        """scaleExecutor.RequestScale for one poll: the replica count KEDA itself sets (`current`
        when it leaves scaling to the HPA)."""
        policy = self.policy
        idle = policy.idle_replica_count
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
            active = self._metric(view, 1.0) > policy.activation_threshold
            desired = self.request_scale(view.now_s, current, active)
            if desired != current:
                return desired
        # The HPA's AverageValue over its sync period (it does nothing at zero: scaling disabled).
        metric = self._metric(view, policy.hpa_sync_period_s)
        tolerances = self.hpa.policy.tolerances
        return self.hpa.reconcile(
            view.now_s, current, lambda: average_value_replicas(metric, policy.target, current, tolerances)
        )

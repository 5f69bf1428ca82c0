"""KEDA's scale executor and ScaledObject tests, plus the Kubernetes HPA cases of the AverageValue
external metric KEDA's generated HPA uses, ported.

KEDA's executor (RequestScale) is capsim's `KedaState.request_scale(now_s, current, active)`; the
ScaledObject -> HPA conversion is `KedaState.hpa.policy`; the generated HPA's replica count for an
external AverageValue target is `average_value_replicas`, normalized by the HPA (no `behavior`).
"""

from __future__ import annotations

import pytest

from capsim.autoscale.keda import KedaPolicy, KedaState, average_value_replicas
from tests.peer.upstream import K8S_HORIZONTAL, K8S_REPLICA_CALCULATOR, KEDA_EXECUTOR, KEDA_SCALEDOBJECT

NOW_S = 60.0  # the ScaledObject was created at 0; its initial cooldown (0 s) has passed


# (test, min replicas, current replicas, active, expected replicas)
EXECUTOR = [
    # minReplicaCount 0, 10 replicas, triggers idle, never active (LastActiveTime nil): to zero.
    ("TestScaleToMinReplicasWhenNotActive", 0, 10, False, 0),
    ("TestScaleToMinReplicasFromLowerInitialReplicaCount", 5, 1, False, 5),
    ("TestScaleFromMinReplicasWhenActive", 0, 0, True, 1),
]

# With an idle replica count: (test, idle, min replicas, current, active, expected)
IDLE = [
    ("TestScaleToIdleReplicasWhenNotActive", 0, 5, 10, False, 0),
    ("TestScaleFromIdleToMinReplicasWhenActive", 0, 5, 0, True, 5),
]


@pytest.mark.parametrize(
    ("idle", "min_replicas", "current", "active", "expected"),
    [pytest.param(*row[1:], id=KEDA_EXECUTOR.cite(row[0])) for row in IDLE],
)
def test_scale_executor_with_idle_replicas(
    idle: int, min_replicas: int, current: int, active: bool, expected: int
) -> None:
    policy = KedaPolicy(idle_replica_count=idle, min_replicas=min_replicas, max_replicas=20, target=5)
    assert KedaState(policy).request_scale(NOW_S, current, active) == expected


@pytest.mark.parametrize(
    ("min_replicas", "current", "active", "expected"),
    [pytest.param(*row[1:], id=KEDA_EXECUTOR.cite(row[0])) for row in EXECUTOR],
)
def test_scale_executor_agrees_with_keda(min_replicas: int, current: int, active: bool, expected: int) -> None:
    state = KedaState(KedaPolicy(min_replicas=min_replicas, max_replicas=20, target=5))
    assert state.request_scale(NOW_S, current, active) == expected
    if active:
        assert state.last_active_s == NOW_S  # result.LastActiveTime set


# TestGetHPAReplicas: (name, minReplicaCount, maxReplicaCount, HPA min, HPA max); None: unset.
HPA_REPLICAS = [
    ("Default min and max", None, None, 1, 100),
    ("Custom min, default max", 5, None, 5, 100),
    ("Default min, custom max", None, 10, 1, 10),
    ("Custom min and max", 5, 10, 5, 10),
    ("Zero min, default max", 0, None, 1, 100),
]


@pytest.mark.parametrize(
    ("min_count", "max_count", "hpa_min", "hpa_max"),
    [pytest.param(*row[1:], id=KEDA_SCALEDOBJECT.cite(f"TestGetHPAReplicas/{row[0]}")) for row in HPA_REPLICAS],
)
def test_scaled_object_becomes_an_hpa(min_count: int | None, max_count: int | None, hpa_min: int, hpa_max: int) -> None:
    given = {k: v for k, v in (("min_replicas", min_count), ("max_replicas", max_count)) if v is not None}
    hpa = KedaState(KedaPolicy(target=5, **given)).hpa.policy
    assert (hpa.min_replicas, hpa.max_replicas) == (hpa_min, hpa_max)
    assert not hpa.has_behavior  # KEDA copies `behavior` only from advanced.horizontalPodAutoscalerConfig


BOUNDS = "TestCheckReplicaCountBoundsAreValid"


@pytest.mark.parametrize(
    ("min_count", "max_count", "idle", "valid"),
    [
        pytest.param(1, 5, None, True, id=KEDA_SCALEDOBJECT.cite(f"{BOUNDS}/Valid: min 1, max 5, no idle")),
        pytest.param(1, 5, 0, True, id=KEDA_SCALEDOBJECT.cite(f"{BOUNDS}/Valid: min 1, max 5, idle 0")),
        pytest.param(2, 1, None, False, id=KEDA_SCALEDOBJECT.cite(f"{BOUNDS}/Invalid: min 2 > max 1")),
        pytest.param(1, 5, 1, False, id=KEDA_SCALEDOBJECT.cite(f"{BOUNDS}/Invalid: idle 1 == min 1")),
        pytest.param(1, 5, 2, False, id=KEDA_SCALEDOBJECT.cite(f"{BOUNDS}/Invalid: idle 2 > min 1")),
    ],
)
def test_replica_count_bounds(min_count: int, max_count: int, idle: int | None, valid: bool) -> None:
    settings = {"target": 5, "min_replicas": min_count, "max_replicas": max_count, "idle_replica_count": idle}
    if valid:
        KedaPolicy(**settings)
    else:
        with pytest.raises(ValueError, match="min_replicas"):
            KedaPolicy(**settings)


# The generated HPA's external AverageValue metric: (source, test, current, metric total, target per
# replica, expected), in upstream's milli-units.
AVERAGE_VALUE = [
    (K8S_REPLICA_CALCULATOR, "TestReplicaCalcScaleUpPerPodCMExternal", 3, 8600, 2150, 4),
    (K8S_REPLICA_CALCULATOR, "TestReplicaCalcScaleDownPerPodCMExternal", 5, 8600, 2867, 3),
    (K8S_REPLICA_CALCULATOR, "TestReplicaCalcTolerancePerPodCMExternal", 3, 8600, 2900, 3),
]


@pytest.mark.parametrize(
    ("current", "metric", "target", "expected"),
    [pytest.param(*row[2:], id=row[0].cite(row[1])) for row in AVERAGE_VALUE],
)
def test_average_value_replicas(current: int, metric: float, target: float, expected: int) -> None:
    assert average_value_replicas(metric, target, current, 0.1) == expected


# Full reconciles of an HPA on such a metric (minReplicas 2, maxReplicas 6), as KEDA generates it.
RECONCILE = [
    ("TestScaleUpPerPodCMExternal", 3, 8600, 2222, None, 4),
    ("TestScaleDownPerPodCMExternal", 5, 8600, 3000, [], 3),
    ("TestTolerancePerPodCMExternal", 4, 8600, 2200, None, 4),
]


@pytest.mark.parametrize(
    ("current", "metric", "target", "recommendations", "expected"),
    [pytest.param(*row[1:], id=K8S_HORIZONTAL.cite(row[0])) for row in RECONCILE],
)
def test_generated_hpa_reconcile(
    current: int, metric: float, target: float, recommendations: list[tuple[float, int]] | None, expected: int
) -> None:
    state = KedaState(KedaPolicy(min_replicas=2, max_replicas=6, target=target))
    if recommendations is not None:
        state.hpa.recommendations = recommendations
    assert state.hpa.reconcile(NOW_S, current, lambda: average_value_replicas(metric, target, current, 0.1)) == expected


def test_cooldown_is_strictly_longer_than_the_period() -> None:
    # scaleToZeroOrIdle: LastActiveTime + cooldownPeriod Before(now) -- exactly 300 s later is too soon.
    state = KedaState(KedaPolicy(min_replicas=0, max_replicas=10, target=5, cooldown_period_s=300))
    assert state.request_scale(100.0, 0, True) == 1
    assert state.request_scale(400.0, 1, False) == 1
    assert state.request_scale(400.5, 1, False) == 0


def test_case_count() -> None:
    assert len(EXECUTOR) + len(IDLE) + len(HPA_REPLICAS) + 5 + len(AVERAGE_VALUE) + len(RECONCILE) == 21

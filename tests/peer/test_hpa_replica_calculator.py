"""Kubernetes replica_calculator_test.go, ported: the HPA's raw recommendation for a per-pod average.

Mapping of the upstream inputs (copied, not recomputed):
- a CPU `resource` metric with `targetUtilization` T% and `levels` per container in milli-CPU against
  requests of 1.0 CPU per container is capsim's `utilization` metric: per-pod busy fraction
  level / 1000, target T / 100;
- a `podMetric` (custom per-pod metric) with milli-`levels` and milli-`targetUtilization` is a
  plain per-pod average (capsim's concurrency, rps, queue length): level / 1000 against target / 1000;
- `podReadiness: False` or `podPhase: Pending` pods are capsim's replicas still starting (`unready`);
  pods without a metric level are `missing`.
The expected replica counts are upstream's.
"""

from __future__ import annotations

import pytest

from capsim.autoscale.hpa import replica_count_for
from tests.peer.upstream import K8S_REPLICA_CALCULATOR as SRC

TOLERANCE = 0.1  # defaultTestingTolerance


def cpu(*levels: int) -> list[float]:
    """Per-pod utilization of milli-CPU levels per container against 1.0 CPU requests."""
    return [level / 1000 for level in levels]


def milli(*levels: int) -> list[float]:
    """Custom-metric values given in milli-units."""
    return [level / 1000 for level in levels]


# (test, current, ready pods' values, unready, missing, target, utilization, expected)
CASES = [
    ("TestReplicaCalcScaleUp", 3, cpu(300, 500, 700), 0, 0, 0.30, True, 5),
    # pod 0 not ready: left out, then counted at 0 on the scale-up.
    ("TestReplicaCalcScaleUpUnreadyLessScale", 3, cpu(500, 700), 1, 0, 0.30, True, 4),
    # pods 1, 2 not ready: counting them at 0 reverses the direction -> no change.
    ("TestReplicaCalcScaleUpUnreadyNoScale", 3, cpu(400), 2, 0, 0.30, True, 3),
    ("TestReplicaCalcScaleHotCpuNoScale", 3, cpu(400), 2, 0, 0.30, True, 3),
    ("TestReplicaCalcScaleUpCM", 3, milli(20000, 10000, 30000), 0, 0, 15.0, False, 4),
    ("TestReplicaCalcScaleUpCMExternal", 1, milli(8600), 0, 0, 4.4, False, 2),  # metricType podMetric
    ("TestReplicaCalcScaleUpCMExternalNoLabels", 1, milli(8600), 0, 0, 4.4, False, 2),
    ("TestReplicaCalcScaleDown", 5, cpu(100, 300, 500, 250, 250), 0, 0, 0.50, True, 3),
    ("TestReplicaCalcScaleDownCM", 5, milli(12000, 12000, 12000, 12000, 12000), 0, 0, 20.0, False, 3),
    # pods 3, 4 not ready: left out of a scale-down (the ready pods' 30% -> ceil(0.6 x 3) = 2).
    ("TestReplicaCalcScaleDownIncludeUnreadyPods", 5, cpu(100, 300, 500), 2, 0, 0.50, True, 2),
    # four Pending pods: left out of a scale-down.
    ("TestReplicaCalcScaleDownExcludeUnscheduledPods", 5, cpu(100), 4, 0, 0.50, True, 1),
    # requests 0.9, 1.0, 1.1 CPU: the HPA uses only their sum (3.0 CPU), as equal requests would.
    ("TestReplicaCalcTolerance", 3, cpu(1010, 1030, 1020), 0, 0, 1.00, True, 3),
    ("TestReplicaCalcToleranceCM", 3, milli(20000, 21000, 21000), 0, 0, 20.0, False, 3),
    # pods 2, 3 report nothing: at 100% of their request on a scale-down (24% -> 62% -> 3).
    ("TestReplicaCalcMissingMetrics", 4, cpu(400, 95), 0, 2, 1.00, True, 3),
    ("TestReplicaCalcEmptyMetrics", 4, [], 0, 0, 1.00, True, None),  # error: no metric, no scaling
    ("TestReplicaCalcMissingMetricsNoChangeEq", 2, cpu(1000), 0, 1, 1.00, True, 2),
    ("TestReplicaCalcMissingMetricsNoChangeGt", 2, cpu(1900), 0, 1, 1.00, True, 2),
    ("TestReplicaCalcMissingMetricsNoChangeLt", 2, cpu(600), 0, 1, 1.00, True, 2),
    # pod 0 not ready, pod 2 missing: 45% -> with the missing pod at 100%, 72%: direction reversed.
    ("TestReplicaCalcMissingMetricsUnreadyChange", 3, cpu(450), 1, 1, 0.50, True, 3),
    ("TestReplicaCalcMissingMetricsUnreadyScaleUp", 3, cpu(2000), 1, 1, 0.50, True, 4),
    ("TestReplicaCalcMissingMetricsHotCpuScaleUp", 3, cpu(2000), 1, 1, 0.50, True, 4),
    ("TestReplicaCalcMissingMetricsUnreadyScaleDown", 4, cpu(100, 100), 1, 1, 0.50, True, 3),
    # a third (surge) pod without metrics: ceil(0.8 x 3) = 3 would scale up on a scale-down -> keep 2.
    ("TestReplicaCalcDuringRollingUpdateWithMaxSurge", 2, cpu(100, 100), 0, 1, 0.50, True, 2),
    # 150 mCPU of 300 mCPU requested per pod (jittered requests summing to 10 x 300): 50% against
    # int(100 x (1/(2 x 0.9) + 0.01)) = 56% scales to 9; against 55% (+0.004) stays inside the tolerance.
    ("TestReplicaCalcComputedToleranceAlgImplementation[+0.01]", 10, [0.5] * 10, 0, 0, 0.56, True, 9),
    ("TestReplicaCalcComputedToleranceAlgImplementation[+0.004]", 10, [0.5] * 10, 0, 0, 0.55, True, 10),
]


@pytest.mark.parametrize(
    ("current", "values", "unready", "missing", "target", "utilization", "expected"),
    [pytest.param(*case[1:], id=SRC.cite(case[0])) for case in CASES],
)
def test_replica_calculator_agrees_with_kubernetes(
    current: int, values: list[float], unready: int, missing: int, target: float, utilization: bool,
    expected: int | None,
) -> None:
    got = replica_count_for(
        sum(values), target, len(values), current, TOLERANCE, unready=unready, missing=missing,
        utilization=utilization,
    )  # fmt: skip
    assert got == expected


def test_cases_cite_distinct_upstream_tests() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) == 25


def test_per_direction_tolerances() -> None:
    # KEP-4951 (behavior.scaleUp/scaleDown.tolerance): no upstream case in the file read; the rule is
    # Tolerances.isWithin, 1 - down <= ratio <= 1 + up. At 60% against 50% (ratio 1.2) a 25% scale-up
    # tolerance holds 3 pods that the default 10% would scale to 4.
    from capsim.autoscale.hpa import HpaPolicy, ScalingPolicy, ScalingRules, Tolerances

    assert replica_count_for(1.8, 0.5, 3, 3, Tolerances(down=0.1, up=0.25), utilization=True) == 3
    assert replica_count_for(1.8, 0.5, 3, 3, 0.1, utilization=True) == 4
    # ... and a 5% scale-down tolerance lets 20 pods at 47% (ratio 0.94) scale down to 19.
    assert replica_count_for(20 * 0.47, 0.5, 20, 20, Tolerances(down=0.05, up=0.1), utilization=True) == 19
    assert replica_count_for(20 * 0.47, 0.5, 20, 20, 0.1, utilization=True) == 20
    rules = ScalingRules(stabilization_window_s=0, policies=[ScalingPolicy(type="Pods", value=4, period_s=15)])
    policy = HpaPolicy(max_replicas=10, target=0.5, scale_up=rules.model_copy(update={"tolerance": 0.25}))
    assert policy.tolerances == Tolerances(down=0.1, up=0.25)

"""Kubernetes horizontal_test.go, ported: one reconcile of the HPA controller (TestScaleUp & co.).

Each upstream testCase runs reconcileAutoscaler once: min/max replicas, spec replicas (the current
count), the pods' CPU levels (milli-CPU per pod against 1.0-CPU requests, capsim's `utilization`) or
custom-metric values (milli-units), their readiness, and the controller's stored recommendations
(`nil`: the first reconcile records the current count; `[]`: none). Without `behavior` the upstream
binary raises the scale-up cap to 8 x current (`scaleUpLimitFactor = 8` in its init()); every case
kept here ends within capsim's (and Kubernetes') production cap of max(2 x current, 4), which
`test_cases_do_not_depend_on_the_test_binary_scale_up_factor` checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from capsim.autoscale.hpa import (
    HpaPolicy,
    HpaState,
    ScalingRules,
    replica_count_for,
    replicas_for_metrics,
)
from tests.peer.hpa_rules import rules
from tests.peer.upstream import K8S_HORIZONTAL as SRC

NOW_S = 10_000.0
TOLERANCE = 0.1


def cpu(*levels: int) -> list[float]:
    """Per-pod utilization: milli-CPU per pod against a 1.0-CPU request."""
    return [level / 1000 for level in levels]


@dataclass(frozen=True)
class Case:
    test: str
    min_replicas: int
    max_replicas: int
    current: int
    expected: int
    values: list[float]  # ready pods' metric values
    target: float  # utilization as a fraction, or the custom metric's average value
    utilization: bool = True
    unready: int = 0
    missing: int = 0
    recommendations: list[tuple[int, float]] | None = None  # (replicas, age in seconds)
    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None
    note: str = field(default="")


CASES = [
    Case("TestScaleUp", 2, 6, 3, 5, cpu(300, 500, 700), 0.30),
    Case("TestScaleUpUnreadyLessScale", 2, 6, 3, 4, cpu(500, 700), 0.30, unready=1),
    Case("TestScaleUpUnreadyNoScale", 2, 6, 3, 3, cpu(400), 0.30, unready=2),
    Case("TestScaleUpHotCpuNoScale", 2, 6, 3, 3, cpu(400), 0.30, unready=2),  # readiness False
    Case("TestScaleUpDeployment", 2, 6, 3, 5, cpu(300, 500, 700), 0.30),
    Case("TestScaleUpReplicaSet", 2, 6, 3, 5, cpu(300, 500, 700), 0.30),
    Case("TestScaleUpCM", 2, 6, 3, 4, [20.0, 10.0, 30.0], 15.0, utilization=False),
    # A custom metric ignores readiness and CPU start time: three pods with values -> 7, capped at 6.
    Case("TestScaleUpHotCpuNoScaleWouldScaleDown", 2, 6, 3, 6, [50.0, 15.0, 30.0], 15.0, utilization=False),
    Case("TestScaleDown", 2, 6, 5, 3, cpu(100, 300, 500, 250, 250), 0.50, recommendations=[]),
    # scaleUp given, scaleDown defaulted (its window from the controller, 300 s): rate 100% / 15 s.
    Case("TestScaleDownWithScalingRules", 2, 6, 5, 3, cpu(100, 300, 500, 250, 250), 0.50, recommendations=[],
         scale_up=rules(0, 0, 100, 15, 30)),
    # No stored recommendation: the first reconcile records 5, which holds the scale-down.
    Case("TestScaleDownStabilizeInitialSize", 2, 6, 5, 5, cpu(100, 300, 500, 250, 250), 0.50),
    Case("TestScaleDownCM", 2, 6, 5, 3, [12.0] * 5, 20.0, utilization=False, recommendations=[]),
    Case("TestScaleDownIncludeUnreadyPods", 2, 6, 5, 2, cpu(100, 300, 500), 0.50, unready=2, recommendations=[]),
    # requests 0.9, 1.0, 1.1 CPU: the HPA uses only their sum, 3.0 CPU, as equal requests would.
    Case("TestTolerance", 1, 5, 3, 3, cpu(1010, 1030, 1020), 1.00),
    Case("TestToleranceCM", 1, 5, 3, 3, [20.0, 20.001, 21.0], 20.0, utilization=False),
    Case("TestMinReplicas", 2, 5, 3, 2, cpu(10, 95, 10), 0.90, recommendations=[]),
    Case("TestZeroMinReplicasDesiredZero", 0, 5, 3, 0, cpu(0, 0, 0), 0.90, recommendations=[]),
    Case("TestMinReplicasDesiredZero", 2, 5, 3, 2, cpu(0, 0, 0), 0.90, recommendations=[]),
    # Zero replicas with minReplicas > 0: autoscaling is disabled ("ScalingDisabled"), stays at 0.
    Case("TestZeroReplicas", 3, 5, 0, 0, [], 0.90),
    Case("TestTooFewReplicas", 3, 5, 2, 3, [], 0.90),
    Case("TestTooManyReplicas", 3, 5, 10, 5, [], 0.90),
    Case("TestMaxReplicas", 2, 5, 3, 5, cpu(8000, 9500, 1000), 0.90),
    Case("TestMissingMetrics", 2, 6, 4, 3, cpu(400, 95), 1.00, missing=2, recommendations=[]),
    Case("TestEmptyMetrics", 2, 6, 4, 4, [], 1.00),  # no metric: FailedGetResourceMetric, no change
    Case("TestEventCreated", 1, 5, 1, 2, [200 / 200], 0.50),  # 200 mCPU of a 0.2-CPU request
    Case("TestEventNotCreated", 1, 5, 2, 2, [200 / 400, 200 / 400], 0.50),
    # Only one pod exists (spec 4): 100% against 50% -> ceil(2 x 1) = 2.
    Case("TestMissingReports", 1, 5, 4, 2, [200 / 200], 0.50, recommendations=[]),
    Case("TestUpscaleCap", 1, 100, 3, 24, [100 / 100, 200 / 100, 300 / 100], 0.10,
         scale_up=rules(0, 0, 700, 60, 0)),
    Case("TestUpscaleCapGreaterThanMaxReplicas", 1, 20, 3, 20, [100 / 100, 200 / 100, 300 / 100], 0.10,
         scale_up=rules(0, 0, 700, 60, 0)),
    # Five pods during a 25% surge over a spec of 4, at the target: no change.
    Case("TestMoreReplicasThanSpecNoScale", 1, 8, 4, 4, cpu(500, 500, 500, 500, 500), 0.50),
    Case("TestNoBackoffUpscaleCM", 1, 5, 3, 4, [20.0, 10.0, 30.0], 15.0, utilization=False),
    Case("TestStabilizeDownscale", 1, 5, 4, 4, [50 / 100] * 3, 1.00, recommendations=[(10, 600.0), (4, 60.0)]),
    Case("TestComputedToleranceAlgImplementation[tc1]", 0, 1000, 10, 9, [0.5] * 10, 0.56, recommendations=[]),
    Case("TestComputedToleranceAlgImplementation[tc2]", 0, 1000, 10, 10, [0.5] * 10, 0.55, recommendations=[]),
    Case("TestScaleUpRCImmediately", 2, 6, 1, 2, cpu(0, 0, 0, 0), 0.80),
    Case("TestScaleDownRCImmediately", 2, 5, 6, 5, cpu(8000, 9500, 1000), 0.50),
]


def reconcile(case: Case) -> int:
    policy = HpaPolicy(
        min_replicas=case.min_replicas, max_replicas=case.max_replicas,
        metric="utilization" if case.utilization else "concurrency", target=case.target,
        scale_up=case.scale_up, scale_down=case.scale_down,
    )  # fmt: skip
    state = HpaState(policy)
    if case.recommendations is not None:
        state.recommendations = [(NOW_S - age_s, replicas) for replicas, age_s in case.recommendations]
    return state.reconcile(
        NOW_S, case.current,
        lambda: replica_count_for(
            sum(case.values), case.target, len(case.values), case.current, TOLERANCE, unready=case.unready,
            missing=case.missing, utilization=case.utilization,
        ),
    )  # fmt: skip


@pytest.mark.parametrize("case", [pytest.param(case, id=SRC.cite(case.test)) for case in CASES])
def test_reconcile_agrees_with_kubernetes(case: Case) -> None:
    assert reconcile(case) == case.expected


def test_cases_do_not_depend_on_the_test_binary_scale_up_factor() -> None:
    for case in CASES:
        if case.scale_up is None and case.expected > case.current:
            assert case.expected <= max(2 * case.current, 4), case.test


def test_cases_cite_distinct_upstream_tests() -> None:
    assert len({case.test for case in CASES}) == len(CASES) == 36


Proposal = tuple[list[float], float, bool] | None  # (ready pods' values, target, utilization); None: no value

# Several metrics (computeReplicasForMetrics): the largest proposal wins; a metric without a value
# (an invalid spec, or a metrics API error upstream) blocks a scale-down, and alone blocks scaling.
# (test, min, max, current, expected, metrics, stored recommendations)
SEVERAL_METRICS: list[tuple[str, int, int, int, int, list[Proposal], list[tuple[int, float]] | None]] = [
    ("TestScaleUpOneMetricInvalid", 2, 6, 3, 4, [(cpu(300, 400, 500), 0.30, True), None], None),
    ("TestScaleUpFromZeroOneMetricInvalid", 0, 6, 0, 4, [(cpu(300, 400, 500), 0.30, True), None], []),
    ("TestScaleUpBothMetricsEmpty", 2, 6, 3, 3, [None], None),
    ("TestScaleUpOneMetricEmpty", 2, 6, 3, 4, [(cpu(300, 400, 500), 0.30, True), None], None),
    ("TestNoScaleDownOneMetricInvalid", 2, 6, 5, 5, [(cpu(100, 300, 500, 250, 250), 0.50, True), None], []),
    ("TestNoScaleDownOneMetricEmpty", 2, 6, 5, 5, [(cpu(100, 300, 500, 250, 250), 0.50, True), None], []),
    # CPU at 2000% of a 10% target and qps 20 against 15: the CPU's 600 wins, capped at maxReplicas 5.
    ("TestNoBackoffUpscaleCMNoBackoffCpu", 1, 5, 3, 5,
     [(cpu(20000, 10000, 30000), 0.10, True), ([20.0, 10.0, 30.0], 15.0, False)], None),
]


@pytest.mark.parametrize(
    ("min_replicas", "max_replicas", "current", "expected", "metrics", "recommendations"),
    [pytest.param(*row[1:], id=SRC.cite(row[0])) for row in SEVERAL_METRICS],
)
def test_several_metrics_agree_with_kubernetes(
    min_replicas: int, max_replicas: int, current: int, expected: int, metrics: list[Proposal],
    recommendations: list[tuple[int, float]] | None,
) -> None:
    state = HpaState(HpaPolicy(min_replicas=min_replicas, max_replicas=max_replicas, target=0.5))
    if recommendations is not None:
        state.recommendations = [(NOW_S - age_s, replicas) for replicas, age_s in recommendations]

    def proposal(spec: Proposal) -> int | None:
        if spec is None:
            return None
        values, target, utilization = spec
        return replica_count_for(sum(values), target, len(values), current, TOLERANCE, utilization=utilization)

    got = state.reconcile(NOW_S, current, lambda: replicas_for_metrics([proposal(m) for m in metrics], current))
    assert got == expected
    assert expected <= max(2 * current, 4)  # within the production scale-up cap (see the module docstring)


def test_policy_takes_metric_and_target_or_a_list() -> None:
    policy = HpaPolicy(
        max_replicas=5, metrics=[{"metric": "utilization", "target": 0.6}, {"metric": "rps", "target": 50}]
    )
    assert [t.metric for t in policy.targets] == ["utilization", "rps"]
    assert [t.target for t in HpaPolicy(max_replicas=5, metric="rps", target=50).targets] == [50]
    with pytest.raises(ValueError, match="not both"):
        HpaPolicy(max_replicas=5, target=0.6, metrics=[{"metric": "rps", "target": 50}])
    with pytest.raises(ValueError, match="`target` is required"):
        HpaPolicy(max_replicas=5)

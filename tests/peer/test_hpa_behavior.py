"""Kubernetes horizontal_test.go, ported: normalization of the raw recommendation (stabilization,
`behavior` rate limits, the default path's scale-up cap), table by table.

Scale events come from upstream's generateEventsUniformDistribution(changes, period): event i of n
sits (period - (i + 1) x period / n + period / (2n)) seconds before now (whole seconds, as the Go
Duration conversion truncates); rules from generateScalingRules(pods, podsPeriod, percent,
percentPeriod, stabilizationWindow): a Pods then a Percent policy, select Max; rules left nil get
Kubernetes' defaults (GenerateHPAScaleUpRules / GenerateHPAScaleDownRules).
"""

from __future__ import annotations

import pytest

from capsim.autoscale.hpa import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    HpaPolicy,
    HpaState,
    ScalingPolicy,
    ScalingRules,
    convert_desired_replicas_with_behavior_rate,
    convert_desired_replicas_with_rules,
    scale_limit,
)
from tests.peer.hpa_rules import rules
from tests.peer.upstream import K8S_HORIZONTAL as SRC

NOW_S = 10_000.0


def events(changes: list[int], period_s: int) -> list[tuple[float, int]]:
    """generateEventsUniformDistribution, as (time, change) with now = NOW_S."""
    segment = period_s / len(changes)
    return [(NOW_S - int(period_s - segment * (i + 1) + segment / 2), c) for i, c in enumerate(changes)]


# TestScalingWithRules: (name, up events, down events, min, max, up rules, down rules, current, desired, expected)
SCALING_WITH_RULES = [
    ("prenormalized desired replicas within range", [], [], 3, 8, None, None, 5, 7, 7),
    ("prenormalized desired replicas < minReplicas", [], [], 2, 8, None, None, 3, 1, 2),
    ("prenormalized desired replicas within range when minReplicas is 0", [], [], 0, 10, None, None, 1, 0, 0),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", [], [], 1, 10, None, None, 20, 1000, 10),
    ("desired replica count is more than the maximum replica count", [], [], 100, 150, None, None, 100, 1000, 150),
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", [], [], 1, 2000,
     rules(0, 0, 1, 60, 0), None, 3, 1000, 4),
    ("scaleUp with default behavior", [], [], 1, 1000, None, None, 10, 50, 20),
    ("scaleUp with pods policy larger than percent policy", [], [], 1, 1000, rules(100, 60, 100, 60, 0), None,
     10, 500, 110),
    ("scaleUp with percent policy larger than pods policy", [], [], 1, 1000, rules(2, 60, 100, 60, 0), None,
     10, 500, 20),
    ("scaleUp with spec MaxReplicas limitation with large pod policy", [], [], 1, 1000, rules(100, 60, 0, 0, 0),
     None, 10, 50, 50),
    ("scaleUp with spec MaxReplicas limitation with large percent policy", [], [], 1, 1000,
     rules(10000, 60, 0, 0, 0), None, 10, 50, 50),
    ("scaleUp with pod policy limitation", [], [], 1, 1000, rules(30, 60, 0, 0, 0), None, 10, 50, 40),
    ("scaleUp with percent policy limitation", [], [], 1, 1000, rules(0, 0, 200, 60, 0), None, 10, 50, 30),
    ("scaleDown with percent policy larger than pod policy", [], [], 1, 1000, None, rules(20, 60, 1, 60, 300),
     100, 2, 80),
    ("scaleDown with pod policy larger than percent policy", [], [], 1, 1000, None, rules(2, 60, 1, 60, 300),
     100, 2, 98),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy", [], [], 1, 1000, None,
     rules(100, 60, 0, 0, 300), 10, 0, 1),
    ("scaleDown with spec MinReplicas limitation with large pod policy", [], [], 1, 1000, None,
     rules(100, 60, 0, 0, 300), 10, 0, 1),
    ("scaleDown with spec MinReplicas limitation with large percent policy", [], [], 5, 1000, None,
     rules(0, 0, 100, 60, 300), 10, 2, 5),
    ("scaleDown with pod policy limitation", [], [], 1, 1000, None, rules(5, 60, 0, 0, 300), 10, 2, 5),
    ("scaleDown with percent policy limitation", [], [], 1, 1000, None, rules(0, 0, 50, 60, 300), 10, 5, 5),
    ("scaleUp with spec MaxReplicas limitation with large pod policy and events", events([1, 5, 9], 120), [],
     1, 200, rules(300, 60, 0, 0, 0), None, 100, 500, 200),
    ("scaleUp with spec MaxReplicas limitation with large percent policy and events", events([1, 5, 9], 120),
     [], 1, 200, rules(0, 0, 10000, 60, 0), None, 100, 500, 200),
    ("scaleUp with currentReplicas limitation with rate.PeriodSeconds with a lot of recent scale up events",
     events([1, 5, 9], 120), [], 1, 1000, rules(5, 120, 0, 0, 0), None, 100, 500, 100),
    ("scaleUp with pod policy and previous scale up events", events([1, 5, 9], 120), [], 1, 1000,
     rules(150, 120, 0, 0, 0), None, 100, 500, 235),
    ("scaleUp with percent policy and previous scale up events", events([1, 5, 9], 120), [], 1, 1000,
     rules(0, 0, 200, 120, 0), None, 100, 500, 255),
    ("scaleUp with percent policy and previous scale up and down events", events([4], 120), events([2], 120),
     1, 1000, rules(0, 0, 300, 300, 0), None, 6, 24, 16),
    ("scaleDown with default policy and previous events", [], events([1, 5, 9], 120), 1, 1000, None, None,
     10, 5, 5),
    ("scaleDown with spec MinReplicas=nil limitation with large pod policy and previous events", [],
     events([1, 5, 9], 120), 1, 1000, None, rules(115, 120, 0, 0, 300), 100, 0, 1),
    ("scaleDown with spec MinReplicas limitation with large pod policy and previous events", [],
     events([1, 5, 9], 120), 5, 1000, None, rules(130, 120, 0, 0, 300), 100, 0, 5),
    ("scaleDown with spec MinReplicas limitation with large percent policy and previous events", [],
     events([1, 5, 9], 120), 5, 1000, None, rules(0, 0, 100, 120, 300), 100, 2, 5),
    ("scaleDown with pod policy limitation and previous events", [], events([1, 5, 9], 120), 1, 1000, None,
     rules(5, 120, 0, 0, 300), 100, 2, 100),
    ("scaleDown with percent policy limitation and previous events", [], events([2, 4, 6], 120), 1, 1000,
     None, rules(0, 0, 50, 120, 300), 100, 0, 56),
    ("scaleDown with percent policy and previous scale up and down events", events([2], 120), events([4], 120),
     1, 1000, None, rules(0, 0, 50, 180, 0), 10, 1, 6),
    ("scaleDown with previous events preventing further scale down", [], events([10, 10, 10], 120), 1, 1000,
     None, rules(0, 0, 10, 120, 300), 100, 0, 100),
    ("scaleDown with with previous events still allowing more scale down", [], events([10, 10, 10], 120), 1,
     1000, None, rules(0, 0, 1000, 120, 300), 10, 5, 5),
    ("check 'outdated' flag for events for one behavior for up", events([8, 12, 9, 11], 120), [], 1, 1000,
     rules(1000, 60, 0, 0, 0), None, 100, 200, 200),
    ("check that events were not marked 'outdated' for two different policies in the behavior for up",
     events([8, 12, 9, 11], 120), [], 1, 1000, rules(1000, 120, 100, 60, 0), None, 100, 200, 200),
    ("check that events were marked 'outdated' for two different policies in the behavior for up",
     events([8, 12, 9, 11], 120), [], 1, 1000, rules(1000, 30, 100, 60, 0), None, 100, 200, 200),
    ("check 'outdated' flag for events for one behavior for down", [], events([8, 12, 9, 11], 120), 1, 1000,
     None, rules(1000, 60, 0, 0, 300), 100, 5, 5),
    ("check that events were not marked 'outdated' for two different policies in the behavior for down", [],
     events([8, 12, 9, 11], 120), 1, 1000, None, rules(1000, 120, 100, 60, 300), 100, 5, 5),
    ("check that events were marked 'outdated' for two different policies in the behavior for down", [],
     events([8, 12, 9, 11], 120), 1, 1000, None, rules(1000, 30, 100, 60, 300), 100, 5, 5),
]  # fmt: skip


@pytest.mark.parametrize(
    ("up_events", "down_events", "min_replicas", "max_replicas", "up", "down", "current", "desired", "expected"),
    [pytest.param(*row[1:], id=SRC.cite(f"TestScalingWithRules/{row[0]}")) for row in SCALING_WITH_RULES],
)
def test_scaling_with_rules(
    up_events: list[tuple[float, int]], down_events: list[tuple[float, int]], min_replicas: int,
    max_replicas: int, up: ScalingRules | None, down: ScalingRules | None, current: int, desired: int,
    expected: int,
) -> None:
    got = convert_desired_replicas_with_behavior_rate(
        current, desired, min_replicas, max_replicas, up or DEFAULT_SCALE_UP, down or DEFAULT_SCALE_DOWN,
        up_events, down_events, NOW_S,
    )  # fmt: skip
    assert got == expected


# TestConvertDesiredReplicasWithRules (no `behavior`): (annotation, current, desired, min, max, expected)
CONVERT_WITH_RULES = [
    ("prenormalized desired replicas within range", 5, 7, 3, 8, 7),
    ("prenormalized desired replicas < minReplicas", 3, 1, 2, 8, 2),
    ("prenormalized desired zeroed replicas within range", 1, 0, 0, 10, 0),
    ("maxReplicas is the limit because maxReplicas < scaleUpLimit", 20, 1000, 1, 10, 10),
    # Expected calculateScaleUpLimit(3): max(2 x 3, 4) = 6 with the production factor (the upstream
    # test binary sets scaleUpLimitFactor = 8, which makes it 24 there).
    ("scaleUpLimit is the limit because scaleUpLimit < maxReplicas", 3, 1000, 1, 2000, 6),
]


@pytest.mark.parametrize(
    ("current", "desired", "min_replicas", "max_replicas", "expected"),
    [
        pytest.param(*row[1:], id=SRC.cite(f"TestConvertDesiredReplicasWithRules/{row[0]}"))
        for row in CONVERT_WITH_RULES
    ],
)
def test_convert_desired_replicas_with_rules(
    current: int, desired: int, min_replicas: int, max_replicas: int, expected: int
) -> None:
    assert convert_desired_replicas_with_rules(current, desired, min_replicas, max_replicas) == expected


def two_policies_min_change() -> ScalingRules:
    return ScalingRules(
        stabilization_window_s=300, select_policy="Min",
        policies=[
            ScalingPolicy(type="Pods", value=2, period_s=60), ScalingPolicy(type="Percent", value=50, period_s=60)
        ],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("current", "up", "expected"),
    [
        pytest.param(1, True, 2, id=SRC.cite("TestCalculateScaleUpLimitWithScalingRules")),
        pytest.param(5, False, 3, id=SRC.cite("TestCalculateScaleDownLimitWithBehaviors")),
    ],
)
def test_scale_limit_with_min_change_policy(current: int, up: bool, expected: int) -> None:
    assert scale_limit(current, [], [], two_policies_min_change(), NOW_S, up=up) == expected


def state_with(recommendations: list[tuple[int, float]], up_window_s: float | None, down_window_s: float | None):  # type: ignore[no-untyped-def]
    """An HPA (with `behavior` when windows are given) holding recommendations (replicas, age)."""
    up = down = None
    if up_window_s is not None and down_window_s is not None:
        up = ScalingRules(stabilization_window_s=up_window_s, policies=DEFAULT_SCALE_UP.policies)
        down = ScalingRules(stabilization_window_s=down_window_s, policies=DEFAULT_SCALE_DOWN.policies)
    policy = HpaPolicy(max_replicas=1000, target=0.5, scale_up=up, scale_down=down)
    state = HpaState(policy)
    state.recommendations = [(NOW_S - age_s, replicas) for replicas, age_s in recommendations]
    return state


MIN = 60.0
# TestNormalizeDesiredReplicas (no `behavior`, 5 min window): (name, recommendations, raw, expected, log length)
NORMALIZE = [
    ("empty log", [], 5, 5, 1),
    ("stabilize", [(4, 2 * MIN), (5, 1 * MIN)], 3, 5, 3),
    ("no stabilize", [(1, 2 * MIN), (2, 1 * MIN)], 3, 3, 3),
    ("no stabilize - old recommendations", [(10, 10 * MIN), (9, 9 * MIN)], 3, 3, 2),
    ("stabilize - old recommendations", [(10, 10 * MIN), (4, 1 * MIN), (5, 2 * MIN), (9, 9 * MIN)], 3, 5, 4),
]


@pytest.mark.parametrize(
    ("recommendations", "raw", "expected", "log_length"),
    [pytest.param(*row[1:], id=SRC.cite(f"TestNormalizeDesiredReplicas/{row[0]}")) for row in NORMALIZE],
)
def test_stabilize_without_behavior(
    recommendations: list[tuple[int, float]], raw: int, expected: int, log_length: int
) -> None:
    state = state_with(recommendations, None, None)
    assert state.stabilize(NOW_S, raw) == expected
    assert len(state.recommendations or []) == log_length


# TestNormalizeDesiredReplicasWithBehavior: (name, recommendations, current, raw, expected, stored replicas,
# up window, down window); the upstream struct leaves unset windows at 0.
NORMALIZE_WITH_BEHAVIOR = [
    ("empty recommendations for scaling down", [], 100, 5, 5, [5], 0, 0),
    ("simple scale down stabilization", [(4, 2 * MIN), (5, 1 * MIN)], 100, 3, 5, [4, 5, 3], 0, 3 * MIN),
    ("simple scale up stabilization", [(4, 2 * MIN), (5, 1 * MIN)], 1, 7, 4, [4, 5, 7], 5 * MIN, 0),
    ("no scale down stabilization", [(1, 2 * MIN), (2, 1 * MIN)], 100, 3, 3, [1, 2, 3], 5 * MIN, 0),
    ("no scale up stabilization", [(4, 2 * MIN), (5, 1 * MIN)], 1, 3, 3, [4, 5, 3], 0, 5 * MIN),
    ("no scale down stabilization, reuse recommendation element", [(10, 10 * MIN), (9, 9 * MIN)], 100, 3, 3,
     [10, 3], 0, 0),
    ("no scale up stabilization, reuse recommendation element", [(10, 10 * MIN), (9, 9 * MIN)], 1, 100, 100,
     [10, 100], 0, 0),
    ("scale down stabilization, reuse one of obsolete recommendation element",
     [(10, 10 * MIN), (4, 1 * MIN), (5, 2 * MIN), (9, 9 * MIN)], 100, 3, 5, [10, 4, 5, 3], 0, 3 * MIN),
    ("scale up stabilization, reuse one of obsolete recommendation element",
     [(10, 100 * MIN), (6, 1 * MIN), (5, 2 * MIN), (9, 3 * MIN)], 1, 100, 5, [100, 6, 5, 9], 300, 0),
    ("scale up and down stabilization, do not scale up when prenormalized rec goes down",
     [(2, 100 * MIN), (3, 3 * MIN)], 2, 1, 2, None, 300, 300),
    ("scale up and down stabilization, do not scale down when prenormalized rec goes up",
     [(2, 100 * MIN), (1, 3 * MIN)], 2, 3, 2, None, 300, 300),
]  # fmt: skip


@pytest.mark.parametrize(
    ("recommendations", "current", "raw", "expected", "stored", "up_window_s", "down_window_s"),
    [
        pytest.param(*row[1:], id=SRC.cite(f"TestNormalizeDesiredReplicasWithBehavior/{row[0]}"))
        for row in NORMALIZE_WITH_BEHAVIOR
    ],
)
def test_stabilize_with_behaviors(
    recommendations: list[tuple[int, float]], current: int, raw: int, expected: int, stored: list[int] | None,
    up_window_s: float, down_window_s: float,
) -> None:
    state = state_with(recommendations, up_window_s, down_window_s)
    assert state.stabilize_with_behaviors(NOW_S, current, raw) == expected
    if stored is not None:
        assert [r for _, r in state.recommendations or []] == stored


def test_case_count() -> None:
    assert len(SCALING_WITH_RULES) + len(CONVERT_WITH_RULES) + 2 + len(NORMALIZE) + len(NORMALIZE_WITH_BEHAVIOR) == 64

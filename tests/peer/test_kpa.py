"""Knative Serving's autoscaler_test.go, target_test.go and metric_test.go, ported.

autoscaler_test.go drives `autoscaler.Scale` with stable / panic window averages it sets directly
(metricClient) and a ready-pod count (fakePodCounter); capsim's `KpaState.scale` takes the same
inputs. The upstream test autoscaler (newTestAutoscaler) has TargetValue = the per-pod target
(capsim: `target` with `target_utilization` 1), PanicThreshold 2 (200%), MaxScaleUpRate 10,
MaxScaleDownRate 10, a 60 s stable window, Reachable, and is created over 1 ready pod.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from capsim.autoscale.kpa import KpaPolicy, KpaState
from tests.peer.upstream import KNATIVE_AUTOSCALER as SRC
from tests.peer.upstream import KNATIVE_METRIC, KNATIVE_TARGET

TICK_S = 2.0  # multiscaler.go tickInterval


def autoscaler(target: float, ready_at_creation: int = 1, **spec: Any) -> KpaState:
    """newTestAutoscaler(target, ...): the upstream test DeciderSpec as a capsim policy."""
    settings: dict[str, Any] = {
        "max_replicas": 100_000, "target": target, "target_utilization": 1.0, "max_scale_up_rate": 10.0,
        "max_scale_down_rate": 10.0, "panic_threshold_percentage": 200.0, "stable_window_s": 60.0,
    }  # fmt: skip
    settings.update(spec)
    return KpaState(KpaPolicy(**settings), ready_at_creation=ready_at_creation, created_s=0.0)


Step = tuple[float, float, float, int, int | None]  # (now_s, stable, panic, ready pods, expected pods)


def run(state: KpaState, steps: list[Step]) -> None:
    for now_s, stable, panic, ready, expected in steps:
        assert state.scale(stable, panic, ready, now_s) == expected, (now_s, stable, panic, ready)


# TestAutoscalerScaleDownDelay's DeciderSpec: TargetValue 10, rates 10, PanicThreshold 100 (10,000%:
# never reached here; capsim's largest panic threshold, 1000%, is not reached either: 4 pods on 1),
# ScaleDownDelay 5 min; New() found 0 ready pods.
def delayed() -> KpaState:
    return autoscaler(10.0, ready_at_creation=0, panic_threshold_percentage=1000.0, scale_down_delay_s=300.0)


SEQUENCES: list[tuple[str, Callable[[], KpaState], list[Step]]] = [
    ("TestAutoscalerScaleDownDelay/simple", delayed, [(2, 40, 40, 0, 4), (300, 0, 0, 0, 4), (302, 0, 0, 0, 0)]),
    ("TestAutoscalerScaleDownDelay/gradual", delayed, [
        (2, 40, 40, 0, 4), (300, 0, 0, 0, 4), (302, 0, 0, 0, 0),  # the "simple" subtest ran first
        (540, 40, 40, 0, 4), (600, 30, 30, 0, 4), (660, 0, 0, 0, 4), (840, 0, 0, 0, 3), (900, 0, 0, 0, 0),
    ]),
    ("TestAutoscalerScaleDownDelayZero",
     lambda: autoscaler(10.0, ready_at_creation=0, panic_threshold_percentage=1000.0),
     [(0, 40, 40, 0, 4), (0.5, 20, 20, 0, 2)]),
    ("TestAutoscalerNoDataNoAutoscale", lambda: autoscaler(10.0), [(0, math.nan, math.nan, 1, None)]),
    ("TestAutoscalerStableModeIncreaseWithConcurrencyDefault", lambda: autoscaler(10.0),
     [(0, 50, 10, 1, 5), (0, 100, 10, 1, 10)]),
    ("TestAutoscalerStableModeIncreaseWithRPS", lambda: autoscaler(10.0, metric="rps"),
     [(0, 50, 50, 1, 5), (0, 100, 99, 1, 10)]),
    ("TestAutoscalerUnpanicAfterSlowIncrease", lambda: autoscaler(1.0),
     [(0, 11, 25, 10, 25), (30, 30, 41, 40, 41), (30 + 30 + TICK_S, 50, 56, 55, 50)]),
    ("TestAutoscalerExtendPanicWindow", lambda: autoscaler(1.0), [(0, 11, 25, 10, 25), (30, 30, 80, 40, 80)]),
    ("TestAutoscalerStableModeDecrease", lambda: autoscaler(10.0), [(0, 100, 100, 8, 10), (0, 50, 50, 8, 5)]),
    ("TestAutoscalerStableModeNoTrafficScaleToZero", lambda: autoscaler(10.0), [(0, 1, 0, 1, 1), (0, 0, 0, 1, 0)]),
    ("TestAutoscalerPanicModeExponentialTrackAndStabilize", lambda: autoscaler(1.0), [
        (0, 6, 6, 1, 6), (0, 36, 36, 6, 36), (1, 216, 216, 36, 216), (1, 1296, 1296, 216, 1296),
        (2, 1296, 1296, 1296, 1296),
    ]),
    ("TestAutoscalerPanicThenUnPanicScaleDown", lambda: autoscaler(10.0),
     [(0, 100, 100, 1, 10), (0, 100, 1000, 10, 100), (30, 1, 1, 10, 100), (61, 1, 1, 10, 1)]),
    ("TestAutoscalerRateLimitScaleUp", lambda: autoscaler(10.0), [(0, 1000, 1001, 1, 10), (0, 1000, 1001, 10, 100)]),
    ("TestAutoscalerRateLimitScaleDown", lambda: autoscaler(10.0), [(0, 1, 1, 100, 10), (0, 1, 1, 10, 1)]),
    ("TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound", lambda: autoscaler(10.0), [(0, 1000, 888, 0, 10)]),
    ("TestAutoscalerActivationScale", lambda: autoscaler(10.0, activation_scale=2), [(0, 0, 0, 1, 0), (0, 1, 0, 1, 2)]),
]  # fmt: skip


@pytest.mark.parametrize(("make", "steps"), [pytest.param(m, s, id=SRC.cite(n)) for n, m, s in SEQUENCES])
def test_autoscaler_agrees_with_knative(make: Callable[[], KpaState], steps: list[Step]) -> None:
    run(make(), steps)


def in_panic_for_5s_at(max_panic_pods: int) -> Callable[[KpaState], None]:
    """prepFunc: panicTime = now - 5 s, maxPanicPods given."""

    def prepare(state: KpaState) -> None:
        state.panic_since_s = -5.0
        state.max_panic_pods = max_panic_pods

    return prepare


# TestAutoscalerScale: (label, target, stable, panic, ready pods, spec changes, prepFunc, expected)
SCALE_TABLE: list[tuple[str, float, float, float, int, dict[str, Any], Callable[[KpaState], None] | None, int]] = [
    ("AutoscalerNoDataAtZeroNoAutoscale", 10, 0, 0, 1, {}, None, 0),
    ("AutoscalerNoDataAtZeroNoAutoscaleWithExplicitEPs", 10, 0, 0, 1, {}, None, 0),
    ("AutoscalerStableModeUnlimitedTBC", 181, 21, 26, 1, {}, None, 1),
    ("Autoscaler0TBC", 10, 50, 49, 1, {}, None, 5),
    ("AutoscalerStableModeNoChange", 10, 50, 50, 1, {}, None, 5),
    ("AutoscalerPanicStableLargerThanPanic", 1, 50, 30, 5, {}, in_panic_for_5s_at(5), 50),
    ("AutoscalerPanicStableLessThanPanic", 1, 20, 30, 5, {}, in_panic_for_5s_at(5), 30),
    ("AutoscalerStableModeNoChangeAlreadyScaled", 10, 50, 50, 5, {}, None, 5),
    ("AutoscalerStableModeIncreaseWithSmallScaleUpRate", 1, 3, 3.1, 2, {"max_scale_up_rate": 1.1}, None, 3),
    ("AutoscalerStableModeDecreaseWithSmallScaleDownRate", 10, 1, 1, 100, {"max_scale_down_rate": 1.1}, None, 90),
    ("AutoscalerPanicModeDoublePodCount", 10, 50, 100, 1, {}, None, 10),
]


@pytest.mark.parametrize(
    ("target", "stable", "panic", "ready", "spec", "prepare", "expected"),
    [pytest.param(*row[1:], id=SRC.cite(f"TestAutoscalerScale/{row[0]}")) for row in SCALE_TABLE],
)
def test_scale_table(
    target: float, stable: float, panic: float, ready: int, spec: dict[str, Any],
    prepare: Callable[[KpaState], None] | None, expected: int,
) -> None:
    state = autoscaler(target, **spec)
    if prepare is not None:
        prepare(state)
    assert state.scale(stable, panic, ready, 0.0) == expected


@pytest.mark.parametrize(
    ("ready", "in_panic", "max_panic_pods"),
    [pytest.param(r, r > 1, r, id=SRC.cite(f"TestStartInPanicMode/scale {r}")) for r in (0, 1, 2)],
)
def test_start_in_panic_mode(ready: int, in_panic: bool, max_panic_pods: int) -> None:
    # An autoscaler created over more than one ready pod has no history: it starts in panic.
    state = KpaState(KpaPolicy(max_replicas=10, target=100, stable_window_s=60), ready_at_creation=ready)
    assert (state.in_panic, state.max_panic_pods) == (in_panic, max_panic_pods)


# TestResolveMetricTarget: (name, metric, target (None: Knative's default), utilization, expected
# per-pod target). The test config: container-concurrency fraction 1.0, concurrency default 100,
# rps default 200, rps utilization 0.7. A container concurrency without a target annotation is the
# target before utilization (capsim's `target`).
RESOLVE_TARGET = [
    ("defaults", "concurrency", None, 1.0, 100.0),
    ("default CC + 80% TU", "concurrency", None, 0.8, 80.0),
    ("non-default CC and TU", "concurrency", 2.0, 0.3, 0.6),
    ("with container concurrency 12 and TU=80%, but TU annotation 75%", "concurrency", 12.0, 0.75, 9.0),
    ("with container concurrency 10 and TU=80%", "concurrency", 10.0, 0.8, 8.0),
    ("with container concurrency 1 and TU=80%", "concurrency", 1.0, 0.8, 0.8),
    ("with container concurrency 1", "concurrency", 1.0, 1.0, 1.0),
    ("with container concurrency 10", "concurrency", 10.0, 1.0, 10.0),
    ("with target annotation 1", "concurrency", 1.0, 1.0, 1.0),
    ("with target annotation 1 and TU=0.1%", "concurrency", 1.0, 0.001, 0.01),  # TargetMin
    ("with target annotation 1 and TU=75%", "concurrency", 1.0, 0.75, 0.75),
    ("with target annotation 10 and TU=75%", "concurrency", 10.0, 0.75, 7.5),
    ("with target annotation greater than default (ok)", "concurrency", 500.0, 1.0, 500.0),
    ("RPS: defaults", "rps", None, 0.7, 140.0),
    ("RPS: with target annotation 1", "rps", 1.0, 0.7, 0.7),
    ("RPS: with TU annotation 75%", "rps", None, 0.75, 150.0),
    ("RPS: with target annotation greater than default", "rps", 300.0, 0.7, 210.0),
]


@pytest.mark.parametrize(
    ("metric", "target", "utilization", "expected"),
    [pytest.param(*row[1:], id=KNATIVE_TARGET.cite(f"TestResolveMetricTarget/{row[0]}")) for row in RESOLVE_TARGET],
)
def test_resolve_metric_target(metric: str, target: float | None, utilization: float, expected: float) -> None:
    policy = KpaPolicy(max_replicas=10, metric=metric, target=target, target_utilization=utilization)  # type: ignore[arg-type]
    assert policy.per_pod_target == pytest.approx(expected, rel=1e-12)


def test_container_concurrency_1_at_70_percent_runs_8_pods_for_a_load_of_5() -> None:
    # The example, from the same rule (TargetMin 0.01, not 1): target 0.7 per pod.
    state = KpaState(KpaPolicy(max_replicas=100, target=1, target_utilization=0.7), ready_at_creation=8)
    state.panic_since_s = None
    assert state.scale(5.0, 5.0, 8, 0.0) == 8


# TestMakeMetric: (name, stable window, panic window percentage, expected panic window)
MAKE_METRIC = [
    ("defaults", 60.0, 10.0, 6.0),
    ("with too short panic window", 10.0, 10.0, 1.0),  # 1 s: one metric bucket at least
    ("with longer stable window, no panic window percentage, defaults to 10%", 600.0, 10.0, 60.0),
    ("with longer panic window percentage", 60.0, 50.0, 30.0),
    ("with panic window percentage+rounding", 60.0, 51.0, 31.0),  # 30.6 s rounds to 31 s
]


@pytest.mark.parametrize(
    ("stable_s", "percentage", "expected_s"),
    [pytest.param(*row[1:], id=KNATIVE_METRIC.cite(f"TestMakeMetric/{row[0]}")) for row in MAKE_METRIC],
)
def test_make_metric_panic_window(stable_s: float, percentage: float, expected_s: float) -> None:
    policy = KpaPolicy(max_replicas=10, stable_window_s=stable_s, panic_window_percentage=percentage)
    assert policy.panic_window_s == expected_s


def test_panic_window_rounds_half_away_from_zero_like_go() -> None:
    # Go's Duration.Round: 6.5 s -> 7 s (Python's round() would give 6).
    assert KpaPolicy(max_replicas=10, stable_window_s=65, panic_window_percentage=10).panic_window_s == 7.0


def test_case_count() -> None:
    assert len(SEQUENCES) + len(SCALE_TABLE) + 3 + len(RESOLVE_TARGET) + len(MAKE_METRIC) == 52

"""Ray Serve's test_autoscaling_policy.py, ported: the default policy's scaling factors, delays
(wall-clock since Ray's current policy), cold start, running vs target replicas, and bounds.

Upstream calls the wrapped default policy with an AutoscalingContext: `current_num_replicas` (the
running replicas), `target_num_replicas` (asked for so far) and `total_num_requests`; capsim's
`RayServeState.policy_decision(total_requests, running, target, now_s)` takes the same. Bounds
([min, max]) apply after the policy (`get_decision_num_replicas`), as capsim's `decide` does.
The older file (Ray's `_calculate_desired_num_replicas`) tests the scaling factors plus bounds.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from capsim.autoscale.ray_serve import RayServePolicy, RayServeState, apply_scaling_factors
from tests.peer.upstream import RAY_POLICY as SRC
from tests.peer.upstream import RAY_POLICY_OLD as OLD

TICKS_PER_S = 10  # CONTROL_LOOP_INTERVAL_S = 0.1
QUEUE = "TestReplicaQueueLengthPolicy::"
PARAMS = "TestAutoscalingConfigParameters::"
DESIRED = "TestCalculateDesiredNumReplicas::"


def one(test: str) -> list[Any]:
    """A single ported case of the current file, for a test without parameters."""
    return [pytest.param(0, id=SRC.cite(test))]


def state(**config: Any) -> RayServeState:
    config.setdefault("max_replicas", 10)
    return RayServeState(RayServePolicy(**config))


@pytest.mark.parametrize("_", one(QUEUE + "test_scaling_factor_scale_up_from_0_replicas"))
def test_scaling_factor_scale_up_from_0_replicas(_: int) -> None:
    # min 0, max 2: the policy itself answers 1 x factor (bounds apply later).
    assert state(min_replicas=0, max_replicas=2, upscaling_factor=10).policy_decision(1, 0, 0, 0.0) == 10
    assert state(min_replicas=0, max_replicas=2, upscaling_factor=0.5).policy_decision(1, 0, 0, 0.0) == 1


@pytest.mark.parametrize("_", one(QUEUE + "test_scaling_factor_scale_down_to_0_replicas"))
def test_scaling_factor_scale_down_to_0_replicas(_: int) -> None:
    s = state(min_replicas=0, max_replicas=5, downscaling_factor=10, upscale_delay_s=0, downscale_delay_s=0)
    assert s.policy_decision(0, 5, 5, 0.0) == 1  # downscaling to 0 first stops at 1
    assert s.policy_decision(0, 1, 1, 0.0) == 0
    s = state(min_replicas=0, max_replicas=5, downscaling_factor=0.2, upscale_delay_s=0, downscale_delay_s=0)
    replicas = 5
    for _i in range(5):  # a fractional factor must not get stuck above zero
        replicas = s.policy_decision(0, replicas, replicas, 0.0)
    assert replicas == 0


def run_upscale_downscale_flow(
    s: RayServeState, overload: float, start: int, upscale_target: int, up_s: float, down_s: float,
    to_zero_s: float | None,
) -> None:
    """_run_upscale_downscale_flow: each policy call advances a fake clock by one 0.1 s tick."""
    tick = [0]

    def call(requests: float, replicas: int) -> int:
        now_s = tick[0] / TICKS_PER_S
        tick[0] += 1
        return s.policy_decision(requests, replicas, replicas, now_s)

    up_wait = math.ceil(up_s * TICKS_PER_S)
    down_wait = math.ceil(down_s * TICKS_PER_S)
    zero_wait = math.ceil((to_zero_s or down_s) * TICKS_PER_S)
    assert all(call(overload, start) == start for _ in range(up_wait))
    assert call(overload, start) == upscale_target
    assert all(call(0, upscale_target) == upscale_target for _ in range(down_wait))
    assert call(0, upscale_target) == 1
    assert all(call(0, 1) == 1 for _ in range(zero_wait))
    assert call(0, 1) == 0
    assert all(call(overload, 1) == 1 for _ in range(up_wait // 2))
    call(0, 1)  # a scale-down decision resets the count
    assert all(call(overload, 1) == 1 for _ in range(up_wait))
    assert call(overload, 1) == upscale_target
    assert all(call(0, upscale_target) == upscale_target for _ in range(down_wait // 2))
    call(overload, upscale_target)  # interrupted
    assert all(call(0, upscale_target) == upscale_target for _ in range(down_wait))
    assert call(0, upscale_target) == 1
    assert all(call(0, 1) == 1 for _ in range(zero_wait // 2))
    call(overload, 1)  # interrupted by a scale-up decision
    assert all(call(0, 1) == 1 for _ in range(zero_wait))
    assert call(0, 1) == 0


@pytest.mark.parametrize(
    "to_zero_s",
    [pytest.param(z, id=SRC.cite(QUEUE + f"test_upscale_downscale_delay[{z}]")) for z in (None, 300)],
)
def test_upscale_downscale_delay(to_zero_s: float | None) -> None:
    s = state(min_replicas=0, max_replicas=2, target_ongoing_requests=1, upscale_delay_s=30.0,
              downscale_delay_s=600.0, downscale_to_zero_delay_s=to_zero_s)  # fmt: skip
    assert s.policy_decision(1, 0, 0, 0.0) == 1  # a request at zero: up at once
    run_upscale_downscale_flow(s, overload=2, start=1, upscale_target=2, up_s=30.0, down_s=600.0, to_zero_s=to_zero_s)


@pytest.mark.parametrize("_", one(QUEUE + "test_replicas_delayed_startup"))
def test_replicas_delayed_startup(_: int) -> None:
    s = state(min_replicas=1, max_replicas=200, upscale_delay_s=0, downscale_delay_s=100000, target_ongoing_requests=1)
    assert s.policy_decision(100, 1, 1, 0.0) == 100
    assert s.policy_decision(100, 1, 100, 0.0) == 100  # the new target, none of the new replicas running yet
    assert s.policy_decision(123, 3, 100, 0.0) == 123  # two more running
    assert s.policy_decision(10, 4, 123, 0.0) == 123  # drained, but the downscale delay holds


@pytest.mark.parametrize(
    "delay_s",
    [pytest.param(d, id=SRC.cite(QUEUE + f"test_fluctuating_ongoing_requests[{d}]")) for d in (30.0, 0.0)],
)
def test_fluctuating_ongoing_requests(delay_s: float) -> None:
    s = state(min_replicas=1, max_replicas=10, upscale_delay_s=delay_s, downscale_delay_s=delay_s,
              target_ongoing_requests=50)  # fmt: skip
    for trial in range(1000):
        now_s = trial / TICKS_PER_S
        if trial % 2 == 0:
            assert s.policy_decision(100, 1, 1, now_s) == (1 if delay_s > 0 else 2), trial
        else:
            assert s.policy_decision(40, 2, 2, now_s) == (2 if delay_s > 0 else 1), trial


@pytest.mark.parametrize(
    "ongoing",
    [pytest.param(n, id=SRC.cite(QUEUE + f"test_single_replica_receives_all_requests[{n}]")) for n in (20, 100, 10)],
)
def test_single_replica_receives_all_requests(ongoing: int) -> None:
    s = state(min_replicas=1, max_replicas=50, target_ongoing_requests=5, upscale_delay_s=0.0, downscale_delay_s=0.0)
    assert s.policy_decision(ongoing, 4, 4, 0.0) == ongoing / 5


@pytest.mark.parametrize(
    ("desired", "running", "factors", "expected"),
    [
        pytest.param(20, 10, {"upscaling_factor": 0.5}, 15, id=SRC.cite(PARAMS + "test_apply_scaling_factors_upscale")),
        pytest.param(5, 20, {"downscaling_factor": 0.5}, 13,
                     id=SRC.cite(PARAMS + "test_apply_scaling_factors_downscale")),
        pytest.param(9, 10, {"downscaling_factor": 0.5}, 9,
                     id=SRC.cite(PARAMS + "test_apply_scaling_factors_stuck_downscale")),
    ],
)
def test_apply_scaling_factors(desired: float, running: int, factors: dict[str, float], expected: int) -> None:
    policy = RayServePolicy(min_replicas=1, max_replicas=30, **factors)
    assert apply_scaling_factors(desired, running, policy) == expected


@pytest.mark.parametrize("_", one(PARAMS + "test_upscale_delay_respected_with_slow_loop_steps"))
def test_upscale_delay_respected_with_slow_loop_steps(_: int) -> None:
    s = state(min_replicas=1, max_replicas=10, upscale_delay_s=100.0)
    iteration_s = 0.5 + 0.1  # a 500 ms loop step plus the 100 ms sleep
    now_s = 0.0
    while s.apply_delay(5, 1, now_s) == 1:
        now_s += iteration_s
    assert 100.0 <= now_s <= 100.0 + iteration_s and now_s / 100.0 < 1.1


@pytest.mark.parametrize("_", one(PARAMS + "test_apply_delay_logic_upscale"))
def test_apply_delay_logic_upscale(_: int) -> None:
    s = state(min_replicas=1, max_replicas=10, upscale_delay_s=0.3)
    assert all(s.apply_delay(5, 1, 1000.0 + i * 0.05) == 1 for i in range(3))
    assert s.apply_delay(5, 1, 1000.0 + 0.31) == 5


@pytest.mark.parametrize("_", one(PARAMS + "test_apply_delay_logic_downscale"))
def test_apply_delay_logic_downscale(_: int) -> None:
    s = state(min_replicas=0, max_replicas=10, downscale_to_zero_delay_s=0.4, downscale_delay_s=0.3)
    assert all(s.apply_delay(0, 4, 1000.0 + i * 0.05) == 4 for i in range(3))
    assert s.apply_delay(0, 4, 1000.0 + 0.31) == 1  # 4 -> 1 first
    start_s = 1000.0 + 0.5
    assert all(s.apply_delay(0, 1, start_s + i * 0.1) == 1 for i in range(3))
    assert s.apply_delay(0, 1, start_s + 0.41) == 0  # 1 -> 0 after downscale_to_zero_delay_s


def desired_replicas(total: float, running: int, **config: Any) -> int:
    """_calculate_desired_num_replicas: the scaling factors from the running replicas, then bounds."""
    policy = RayServePolicy(**config)
    scaled = apply_scaling_factors(total / policy.target_ongoing_requests, running, policy)
    return min(max(scaled, policy.min_replicas), policy.max_replicas)


@pytest.mark.parametrize("_", [pytest.param(0, id=OLD.cite(DESIRED + "test_bounds_checking"))])
def test_bounds_checking(_: int) -> None:
    config = {"min_replicas": 9, "max_replicas": 11, "target_ongoing_requests": 100}
    assert desired_replicas(150 * 10, 10, **config) == 11
    assert desired_replicas(50 * 10, 10, **config) == 9
    assert all(9 <= desired_replicas(i * 10, 10, **config) <= 11 for i in range(50, 150))


@pytest.mark.parametrize(
    ("target", "ratio", "low", "high"),
    [pytest.param(t, 2.0, 19, 21, id=OLD.cite(DESIRED + f"test_scale_up[{t}]")) for t in (0.5, 1.0, 1.5)]
    + [pytest.param(t, 0.5, 4, 6, id=OLD.cite(DESIRED + f"test_scale_down[{t}]")) for t in (0.5, 1.0, 1.5)],
)
def test_scale_up_and_down(target: float, ratio: float, low: int, high: int) -> None:
    got = desired_replicas(ratio * target * 10, 10, min_replicas=0, max_replicas=100, target_ongoing_requests=target)
    assert low <= got <= high


@pytest.mark.parametrize(
    ("factors", "up_range", "down_range"),
    [
        pytest.param({"upscaling_factor": 0.5, "downscaling_factor": 0.5}, (24, 26), (5, 8),
                     id=OLD.cite(DESIRED + "test_smoothing_factor")),
        pytest.param({"upscaling_factor": 0.5}, (24, 26), (1, 4),
                     id=OLD.cite(DESIRED + "test_upscale_smoothing_factor")),
        pytest.param({"downscaling_factor": 0.5}, (39, 41), (5, 8),
                     id=OLD.cite(DESIRED + "test_downscale_smoothing_factor")),
    ],
)
def test_smoothing_factors(factors: dict[str, float], up_range: tuple[int, int], down_range: tuple[int, int]) -> None:
    config = {"min_replicas": 0, "max_replicas": 100, "target_ongoing_requests": 1, **factors}
    assert up_range[0] <= desired_replicas(4.0 * 10, 10, **config) <= up_range[1]
    assert down_range[0] <= desired_replicas(0.25 * 10, 10, **config) <= down_range[1]


@pytest.mark.parametrize(
    ("running", "ratio", "factor"),
    [
        pytest.param(n, r, f, id=OLD.cite(DESIRED + f"test_downscaling_with_fractional_smoothing_factor[{n}-{r}-{f}]"))
        for n, r, f in ((2, 0.3, 0.5), (5, 0.4, 0.2), (10, 0.4, 0.1))
    ],
)
def test_downscaling_with_fractional_smoothing_factor(running: int, ratio: float, factor: float) -> None:
    got = desired_replicas(ratio * running, running, min_replicas=0, max_replicas=100, target_ongoing_requests=1,
                           downscaling_factor=factor)  # fmt: skip
    assert got == running - 1

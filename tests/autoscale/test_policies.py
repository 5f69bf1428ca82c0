"""Trace tests of the autoscaling policies' decide functions on synthetic metric histories, with
expectations computed by hand from each system's documented algorithm."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable

import pytest

from capsim.autoscale import HpaPolicy, KedaPolicy, KpaPolicy, RayServePolicy
from capsim.autoscale.view import FleetView, MetricSamples
from tests.scenario_helpers import scenario_dict


def history(concurrency: Callable[[float], float], until_s: float, queue: Callable[[float], float] | None = None):
    """Samples every second: the integral of `concurrency`, and `queue` as a gauge."""
    samples = MetricSamples()
    area = 0.0
    for t in range(int(until_s) + 1):
        if t > 0:
            area += concurrency(t - 0.5)  # midpoint rule over each second
        q = queue(t) if queue else 0.0
        samples.record(float(t), concurrency=area, busy=0.0, queue=q, arrivals=0.0)
    return samples


def view(now_s: float, current: int, samples: MetricSamples, ready: int | None = None) -> FleetView:
    return FleetView(now_s=now_s, current=current, ready=current if ready is None else ready, not_ready=0,
                     executors_per_replica=1, samples=samples)  # fmt: skip


def test_kpa_panics_at_twice_capacity_and_never_scales_down_while_panicking() -> None:
    policy = KpaPolicy(max_replicas=100, target=10, target_utilization=1.0)  # 10 in flight per pod
    # Steady 40 in flight on 4 pods, then a burst to 100 at t = 120 s for 20 s, then back to 40.
    def load(t: float) -> float:
        return 100.0 if 120 <= t < 140 else 40.0

    samples = history(load, 400)
    state = policy.make_state()
    assert state.decide(view(118, 4, samples)) == 4 and not state.in_panic
    # At t = 124 the 6 s panic window averages (4 x 100 + 2 x 40) / 6 = 80 -> 8 pods = 2 x 4 ready.
    assert state.decide(view(124, 4, samples)) == 8 and state.in_panic
    decisions = [state.decide(view(t, 8, samples)) for t in range(126, 186, 2)]
    # With 8 pods ready the burst (10 pods' worth) is no longer 2x capacity, so the panic condition
    # last held at t = 124; the autoscaler stays in panic for a whole stable window after that and
    # meanwhile never scales down, though the stable average has long fallen back.
    assert decisions[0] == 10 and all(b >= a for a, b in itertools.pairwise(decisions))
    assert state.in_panic
    # 124 + 60 < 186: out of panic, back to the stable window's answer.
    assert state.decide(view(186, 10, samples)) < 10 and not state.in_panic


def test_kpa_scales_to_zero_only_after_a_quiet_stable_window_and_grace() -> None:
    policy = KpaPolicy(max_replicas=10, target=10, target_utilization=1.0)
    samples = history(lambda t: 5.0 if t < 100 else 0.0, 400)
    state = policy.make_state()
    first_zero = next(t for t in range(2, 400, 2) if state.decide(view(float(t), 1, samples)) == 0)
    # The last tick that sees traffic is t = 104 (its 6 s panic window holds t < 100); zero comes a
    # whole stable window (60 s) plus the grace period (30 s) later.
    assert first_zero == 194


def test_keda_goes_to_zero_only_after_cooldown() -> None:
    policy = KedaPolicy(target=5, max_replicas=10)  # defaults: polling 30 s, cooldown 300 s
    samples = history(lambda t: 0.0, 1000, queue=lambda t: 12.0 if t < 100 else 0.0)
    state = policy.make_state()
    assert state.decide(view(0, 0, samples)) == 1  # active: 0 -> 1 at once
    assert state.decide(view(15, 1, samples)) == 3  # HPA path: ceil(12 / 5), +100%/+4 allows 3
    current = 3
    last_nonzero = None
    for t in range(30, 700, 15):
        desired = state.decide(view(float(t), current, samples))
        if desired > 0:
            last_nonzero = t
        current = desired
        if desired == 0:
            break
    # The last active poll was at t = 90 (queue 12 > 0); polls at 120, 150, ... are idle; zero comes
    # at the first poll strictly more than 300 s later (KEDA: LastActiveTime + cooldown Before now):
    # not at t = 390, at t = 420.
    assert (last_nonzero, current) == (405, 0)


def test_ray_serve_changes_replicas_only_after_its_delays() -> None:
    policy = RayServePolicy(max_replicas=10, min_replicas=1, target_ongoing_requests=2)
    samples = history(lambda t: 12.0 if t >= 100 else 2.0, 2000)
    state = policy.make_state()
    tick = policy.control_loop_interval_s
    current, changes, t = 1, [], 0.0
    while t < 1900:
        t = round(t + tick, 6)
        desired = state.decide(view(t, current, samples))
        if desired != current:
            changes.append((t, desired))
            current = desired
    up_at, up_to = changes[0]
    # Metrics are pushed every 10 s with a 30 s look-back; the first push that sees "up" is at
    # t = 110 (mean over (80, 110] = 5.3 ongoing) and the decision then needs > 300 ticks (30 s).
    assert up_at == pytest.approx(140.1, abs=1e-6)
    assert len(changes) == 1  # never downscales: 12 ongoing / 2 per replica = 6 replicas stays right
    assert up_to == 6


def test_bad_policy_settings_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from capsim.errors import CapsimInputError
    from capsim.scenario import validate_scenario

    base = {"mode": "realtime", "replicas": 2}
    cases = [
        ({"kind": "hpa", "min_replicas": 5, "max_replicas": 2, "target": 0.6}, "min_replicas (5) must be <="),
        ({"kind": "ray_serve", "max_replicas": 4, "upscale_delay_s": -1}, "upscale_delay_s"),
        ({"kind": "kpa", "max_replicas": 4, "stable_window_s": 2}, "stable_window_s"),
        ({"kind": "hpa", "max_replicas": 1, "target": 0.6}, "within autoscaling"),
    ]
    for autoscaling, words in cases:
        data = scenario_dict(serving={**base, "autoscaling": autoscaling})
        with pytest.raises(CapsimInputError, match=re.escape(words)) as info:
            validate_scenario(data, "s.yaml")
        assert str(info.value).startswith("s.yaml: serving")
    # No `behavior` unless given: Kubernetes' own code path (300 s downscale stabilization, at most
    # max(2 x current, 4) per sync), not explicit default rules.
    assert HpaPolicy(max_replicas=3, target=1).has_behavior is False

"""KEDA's fallback during a metric outage and Knative's initial scale, in whole runs: the rules of
capsim/autoscale/keda.py (metric_with_fallback, request_scale) and kpa.py (apply_bounds) as a fleet
experiences them. The upstream unit cases are in tests/peer/test_keda_fallback.py and
test_kpa_initial_scale.py."""

from __future__ import annotations

from typing import Any

import pytest

from capsim.engine import simulate
from tests.scenario_helpers import make_scenario


def desired(
    autoscaling: dict[str, Any], replicas: int, duration_s: float = 1500.0, rate_rps: float = 10.0
) -> list[tuple[float, int]]:
    """The replica counts the controller asked for, over a run at a steady rate of 100 ms requests."""
    scenario = make_scenario(
        f"duration_s={duration_s}", workload={"arrival": {"kind": "poisson", "rate_rps": rate_rps}},
        service={"kind": "deterministic", "mean_ms": 100.0},
        serving={"mode": "realtime", "replicas": replicas, "autoscaling": autoscaling,
                 "cold_start": {"provisioning_s": {"kind": "fixed", "value_s": 30}}},
    )  # fmt: skip
    return [(float(t), int(n)) for t, n in simulate(scenario).replications[0].replica_changes["desired"]]


# ~1 request in flight against an AverageValue target of 1: the HPA holds 2 replicas.
KEDA = {"kind": "keda", "metric": "concurrency", "target": 1, "max_replicas": 10,
        "metric_outages": [{"start_s": 300, "end_s": 900}]}  # fmt: skip


def test_keda_fallback_holds_its_replicas_through_a_metric_outage() -> None:
    changes = desired({**KEDA, "min_replicas": 1, "fallback": {"failure_threshold": 3, "replicas": 6}}, 2)
    # Polls fall at 15 + 30k s, HPA syncs every 15 s, and both fetches count: the fetch at 300 s fails
    # (1), the poll at 315 s fails (2) and scales straight to fallback.replicas; from the fourth
    # failure the fetch reports 6 x target, which keeps the HPA at 6. After the outage the HPA's
    # 300 s downscale stabilization returns it to 2 at 900 + 300 s.
    assert changes == [(0.0, 2), (315.0, 6), (1200.0, 2)]


def test_without_fallback_an_outage_freezes_the_hpa_and_lets_keda_scale_to_zero() -> None:
    # min_replicas 1: a failed fetch leaves the HPA where it is, and the poll in error changes nothing.
    assert desired({**KEDA, "min_replicas": 1}, 2) == [(0.0, 2)]
    # min_replicas 0: a poll in error is inactive, so once the last active poll (285 s) is more than
    # the 300 s cooldown old, KEDA scales to zero, and back to 1 at the first good poll (915 s), from
    # where the HPA works through the backlog buffered meanwhile.
    changes = desired({**KEDA, "min_replicas": 0}, 2)
    assert changes[:3] == [(0.0, 2), (615.0, 0), (915.0, 1)]


@pytest.mark.parametrize("initial_scale", [1, 4])
def test_knative_initial_scale_holds_until_the_revision_has_been_ready_at_it(initial_scale: int) -> None:
    kpa = {"kind": "kpa", "max_replicas": 10, "target": 10, "initial_scale": initial_scale}
    changes = desired(kpa, 1, duration_s=300.0, rate_rps=5.0)
    if initial_scale == 1:
        assert changes == [(0.0, 1)]  # < 1 in flight needs one pod: no initial scale, no change
        return
    # The first tick raises the revision to its initial scale, which holds while the new pods start
    # (cold start); once 4 are ready the autoscaler may scale down (at most 2x per tick).
    assert changes[:2] == [(0.0, 1), (2.0, 4)]
    t_down = changes[2][0]
    assert t_down > 32.0 and [n for _, n in changes[2:]] == [2, 1]


@pytest.mark.parametrize(
    ("autoscaling", "words"),
    [
        ({"kind": "kpa", "max_replicas": 4, "initial_scale": 0}, "needs allow_zero_initial_scale"),
        ({"kind": "keda", "target": 1, "metric_outages": [{"start_s": 50, "end_s": 40}]}, "must be > start_s"),
        ({"kind": "keda", "target": 1, "fallback": {"failure_threshold": 3, "replicas": 2, "behavior": "sometimes"}},
         "fallback.behavior"),
    ],
)  # fmt: skip
def test_bad_settings_are_named(autoscaling: dict[str, Any], words: str) -> None:
    from capsim.errors import CapsimInputError
    from capsim.scenario import validate_scenario
    from tests.scenario_helpers import scenario_dict

    data = scenario_dict(serving={"mode": "realtime", "replicas": 2, "autoscaling": autoscaling})
    with pytest.raises(CapsimInputError, match=words) as info:
        validate_scenario(data, "s.yaml")
    assert str(info.value).startswith("s.yaml: serving.autoscaling") and "\n" not in str(info.value)

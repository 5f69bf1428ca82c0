"""Spot capacity (interruptions with notice, re-routed queues, replacements, split billing) and the
energy estimate."""

from __future__ import annotations

import pytest

from capsim import simulate
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT
from tests.scenario_helpers import make_scenario


def spot_scenario(*overrides: str):  # type: ignore[no-untyped-def]
    return make_scenario(
        "duration_s=3600",
        *overrides,
        workload={"arrival": {"kind": "poisson", "rate_rps": 200}},
        service={"kind": "lognormal", "mean_ms": 8, "cv": 0.3},
        hardware={"name": "gpu", "usd_per_hour": 2.0, "tdp_w": 300, "idle_w": 60, "usd_per_kwh": 0.2},
        serving={
            "mode": "realtime",
            "replicas": 4,
            "instances_per_replica": 2,
            "load_balancer": "least_outstanding",
            "spot": {"fraction": 0.5, "usd_per_hour": 0.5, "interruptions_per_hour": 3, "notice_s": 120},
            "cold_start": {"provisioning_s": {"kind": "fixed", "value_s": 60}},
        },
    )


def test_interruptions_replace_spot_replicas_and_lose_no_request() -> None:
    result = simulate(spot_scenario())
    rep = result.replications[0]
    summary = rep.summary
    assert summary["replicas"]["spot_interruptions"] >= 3
    assert summary["replicas"]["cold_starts"] == summary["replicas"]["spot_interruptions"]
    outcome = rep.requests["outcome"]
    assert (outcome == COMPLETED).sum() + (outcome == IN_FLIGHT).sum() == outcome.size  # nothing dropped
    assert summary["requests"]["rejected"] == summary["requests"]["timed_out"] == 0
    ready = [v for _, v in rep.replica_changes["ready"]]
    # Short of a replica during each replacement's cold start, back to four once it is ready.
    assert min(ready) < 4 and max(ready) == 4 and ready[-1] == 4


def test_billing_splits_spot_and_on_demand_exactly() -> None:
    rep = simulate(spot_scenario()).replications[0]
    cost = rep.summary["cost"]
    billed = rep.replica_changes["billed"]
    ends = [t for t, _ in billed[1:]] + [3600.0]
    replica_hours = sum(v * (end - t) for (t, v), end in zip(billed, ends, strict=True)) / 3600
    # on-demand + spot covers every billed replica-hour, each at its own price
    assert cost["on_demand_usd"] / 2.0 + cost["spot_usd"] / 0.5 == pytest.approx(replica_hours, rel=1e-9)
    assert cost["usd"] == pytest.approx(cost["on_demand_usd"] + cost["spot_usd"])
    assert 0 < cost["spot_usd"] < cost["on_demand_usd"]


def test_spot_takes_at_most_one_rate() -> None:
    from capsim.errors import CapsimInputError

    # (Giving neither is fine: the catalogue supplies the rate; tests/hardware/test_scenario_catalogue.py.)
    with pytest.raises(CapsimInputError, match="not both"):
        spot_scenario("serving.spot.monthly_interruption_probability=0.1")


def test_energy_is_idle_floor_plus_busy_share_of_tdp() -> None:
    summary = simulate(spot_scenario("serving.spot.fraction=0")).replications[0].summary
    energy = summary["energy"]
    busy_replicas = summary["levels"]["busy_executors_mean"] / 2
    expected_w = 60 * summary["replicas"]["billed_mean"] + (300 - 60) * busy_replicas
    assert energy["mean_power_w"] == pytest.approx(expected_w)
    assert energy["kwh"] == pytest.approx(expected_w * 3600 / 3.6e6)
    assert energy["usd"] == pytest.approx(energy["kwh"] * 0.2)
    assert energy["joules_per_request"] == pytest.approx(energy["joules"] / summary["requests"]["completed"])

"""The compiled engine (capsim/serving/dataplane) against the SimPy engine: the same scenario and
seed must give the same requests — every arrival, batch start, answer time, replica, batch size and
outcome — and the same summary. Both engines read the same random streams in the same order, so
any rule implemented differently shows up as a differing row."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from capsim import simulate
from capsim.errors import CapsimInputError
from capsim.scenario import Scenario, load_scenario, validate_scenario
from capsim.serving.dataplane.support import AUTO_MIN_REQUESTS, choose_engine, compiled_unsupported
from tests.property.strategies import scenarios, settings_for
from tests.scenario_helpers import make_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def _without_engine(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "engine"}


def assert_same_run(scenario: Scenario, replications: int = 1) -> tuple[Any, Any]:
    """Run both engines; every request column and the summary must agree."""
    simpy_run = simulate(scenario, replications=replications, engine="simpy")
    compiled_run = simulate(scenario, replications=replications, engine="compiled")
    assert simpy_run.summary["engine"] == "simpy" and compiled_run.summary["engine"] == "compiled"
    a, b = simpy_run.requests_frame(), compiled_run.requests_frame()
    assert len(a) == len(b)
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        # Bit for bit: the compiled engine computes every time with SimPy's expressions.
        differ = ~((x == y) | (np.isnan(x) & np.isnan(y))) if x.dtype.kind == "f" else x != y
        assert not differ.any(), f"{column}: {differ.sum()} of {len(x)} rows differ, first {np.flatnonzero(differ)[:5]}"
    assert _summaries_close(_without_engine(simpy_run.summary), _without_engine(compiled_run.summary))
    return simpy_run, compiled_run


def _summaries_close(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_summaries_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_summaries_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


BUSY = ("duration_s=20", "workload.arrival.rate_rps=700")
FRONTEND = ("serving.frontend.workers=1", "serving.frontend.per_request_ms=0.5",
            "serving.frontend.window_late_quantiles_ms=[0, 1.5]")  # (the late window: SimPy engine only)


@pytest.mark.parametrize("balancer", ["round_robin", "random", "least_outstanding", "power_of_two"])
@pytest.mark.parametrize(
    ("service", "batching"),
    [
        ({"kind": "exponential", "mean_ms": 8.0}, {"max_batch_size": 1, "max_wait_ms": 0}),
        ({"kind": "lognormal", "mean_ms": 9.0, "cv": 0.6}, {"max_batch_size": 4, "max_wait_ms": 0}),
        ({"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.3}, {"max_batch_size": 8, "max_wait_ms": 2}),
        ({"kind": "deterministic", "mean_ms": 6.0, "per_item_ms": 0.5}, {"max_batch_size": 16, "max_wait_ms": 5}),
    ],
)
def test_batching_and_balancers(balancer: str, service: dict[str, Any], batching: dict[str, Any]) -> None:
    scenario = make_scenario(
        *BUSY, "serving.replicas=3", "serving.instances_per_replica=2", f"serving.load_balancer={balancer}",
        service=service, serving={"mode": "realtime", "replicas": 3, "batching": batching},
    )  # fmt: skip
    assert_same_run(scenario)


def test_timeouts_queue_capacity_cache_and_overhead() -> None:
    scenario = make_scenario(
        *BUSY, "workload.arrival.rate_rps=3000",
        service={"kind": "linear", "base_ms": 5.0, "per_item_ms": 1.5, "cv": 0.5},
        serving={"mode": "realtime", "replicas": 2, "instances_per_replica": 2, "load_balancer": "power_of_two",
                 "batching": {"max_batch_size": 8, "max_wait_ms": 4}, "queue_capacity": 12, "timeout_ms": 8.0,
                 "cache": {"hit_ratio": 0.3, "latency_ms": 0.4}, "overhead_ms": 1.2},
    )  # fmt: skip
    simpy_run, _ = assert_same_run(scenario)
    requests = simpy_run.summary["requests"]
    assert requests["rejected"] > 0 and requests["timed_out"] > 0  # both rules were exercised


@pytest.mark.parametrize(
    "frontend", [{"workers": 1, "per_request_ms": 1.0}, {"workers": 2, "per_request_ms": 2.0, "cv": 0.8}]
)
@pytest.mark.parametrize("limits", [{}, {"timeout_ms": 15.0, "queue_capacity": 6}])
def test_front_end_before_the_batcher(frontend: dict[str, Any], limits: dict[str, Any]) -> None:
    # Requests queue for the front end's workers first; the batching window counts from the batcher's
    # queue, the deadline from the arrival.
    scenario = make_scenario(
        "duration_s=20", "workload.arrival.rate_rps=900",
        service={"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.3},
        serving={"mode": "realtime", "replicas": 2, "load_balancer": "least_outstanding",
                 "batching": {"max_batch_size": 8, "max_wait_ms": 3}, "frontend": frontend, **limits},
    )  # fmt: skip
    simpy_run, _ = assert_same_run(scenario)
    if limits:
        assert simpy_run.summary["requests"]["rejected"] > 0 and simpy_run.summary["requests"]["timed_out"] > 0


def test_measured_profile_and_replications() -> None:
    scenario = load_scenario(SCENARIOS / "measured-cnn-cpu.yaml", ["duration_s=60"])
    assert_same_run(scenario, replications=2)


def test_overload_grows_queues_and_refills_draws() -> None:
    # Twice the capacity for 30 s: queues grow far beyond their first allocation (256), and each
    # replica runs through several 4,096-draw chunks of service times.
    scenario = make_scenario(
        "duration_s=30", "workload.arrival.rate_rps=900",
        service={"kind": "exponential", "mean_ms": 4.0},
        serving={"mode": "realtime", "replicas": 2, "load_balancer": "random"},
    )  # fmt: skip
    simpy_run, _ = assert_same_run(scenario)
    assert simpy_run.summary["queue_wait_ms"]["max"] > 5000  # thousands queued at once


@pytest.mark.parametrize(
    "autoscaling",
    [
        {"kind": "hpa", "min_replicas": 1, "max_replicas": 20, "metric": "utilization", "target": 0.5},
        {"kind": "kpa", "min_replicas": 0, "max_replicas": 12, "target": 2, "metric": "concurrency"},
        {"kind": "keda", "min_replicas": 1, "max_replicas": 12, "target": 5, "polling_interval_s": 5},
        {"kind": "ray_serve", "min_replicas": 1, "max_replicas": 12, "target_ongoing_requests": 2,
         "upscale_delay_s": 10, "downscale_delay_s": 60},
    ],
    ids=["hpa", "kpa-to-zero", "keda", "ray_serve"],
)
def test_autoscaled_fleets(autoscaling: dict[str, Any]) -> None:
    # Traffic that steps up tenfold and back to nothing: replicas start (cold), scale past the
    # plane's first 8 slots, drain, and (where allowed) scale to zero with the activator buffering.
    scenario = make_scenario(
        "duration_s=600",
        workload={"arrival": {"kind": "steps", "steps": [{"start_s": 0, "rate_rps": 20},
                                                          {"start_s": 100, "rate_rps": 400},
                                                          {"start_s": 300, "rate_rps": 5},
                                                          {"start_s": 450, "rate_rps": 0}]}},
        service={"kind": "linear", "base_ms": 10.0, "per_item_ms": 5.0, "cv": 0.2},
        serving={"mode": "realtime", "replicas": 1 if autoscaling["min_replicas"] else 0,
                 "batching": {"max_batch_size": 4, "max_wait_ms": 2}, "load_balancer": "least_outstanding",
                 "autoscaling": autoscaling, "timeout_ms": 30000,
                 "cold_start": {"warm_pool": 2, "provisioning_s": {"kind": "uniform", "low_s": 20, "high_s": 40},
                                "image_pull_s": {"kind": "fixed", "value_s": 5},
                                "model_load_s": {"kind": "fixed", "value_s": 3}}},
    )  # fmt: skip
    simpy_run, _ = assert_same_run(scenario)
    replicas = simpy_run.summary["replicas"]
    assert replicas["cold_starts"] > 0 and replicas["max"] > 1


@settings_for(max_examples=40)
@given(scenarios())
def test_random_scenarios_run_identically(scenario: Scenario) -> None:
    assert_same_run(scenario)


# -- choosing the engine -------------------------------------------------------------------------


def test_auto_takes_the_compiled_engine_for_long_runs_only() -> None:
    short = make_scenario()
    long = make_scenario(f"duration_s={AUTO_MIN_REQUESTS / 10.0 + 1}")  # 10 req/s
    assert choose_engine(short, "auto") == "simpy"
    assert choose_engine(long, "auto") == "compiled"
    assert choose_engine(long, "simpy") == "simpy"
    assert simulate(short).summary["engine"] == "simpy"


def test_mechanisms_the_kernel_lacks_go_to_simpy_or_are_refused() -> None:
    frontend = make_scenario(*FRONTEND)
    assert "serving.frontend.window_late_quantiles_ms" in str(compiled_unsupported(frontend))
    streaming = load_scenario(SCENARIOS / "iot-anomaly-streaming.yaml")
    assert "serving.mode" in str(compiled_unsupported(streaming))
    long_frontend = load_scenario(SCENARIOS / "quickstart.yaml", ["duration_s=100000", *FRONTEND])
    assert choose_engine(long_frontend, "auto") == "simpy"
    refused = r"--engine: the compiled engine cannot run this scenario: serving\.frontend\.window_late_quantiles_ms"
    with pytest.raises(CapsimInputError, match=refused):
        choose_engine(frontend, "compiled")


def test_check_says_which_engine_auto_runs_and_why() -> None:
    from typer.testing import CliRunner

    from capsim.cli.main import app

    def check(name: str, *overrides: str) -> str:
        args = ["check", str(SCENARIOS / name), *(a for o in overrides for a in ("--set", o))]
        return " ".join(CliRunner().invoke(app, args).output.split())

    assert "engine (--engine auto): compiled (19,872,000 expected requests)" in check("diurnal-a10g-hpa.yaml")
    assert ("engine (--engine auto): simpy (180,000 expected requests; the compiled engine from 1,000,000)"
            in check("quickstart.yaml"))  # fmt: skip
    assert ("simpy (serving.frontend.window_late_quantiles_ms (not modelled by the compiled engine))"
            in check("quickstart.yaml", *FRONTEND))  # fmt: skip


def test_spot_fleet_with_interruptions_runs_identically() -> None:
    scenario = load_scenario(SCENARIOS / "spot-heavy-fleet.yaml")
    simpy_run, _ = assert_same_run(scenario)
    assert simpy_run.summary["replicas"]["spot_interruptions"] > 0


@st.composite
def autoscaled_scenarios(draw: st.DrawFn) -> Scenario:
    """Small fleets under a random autoscaler, traffic that rises and falls, random cold starts."""
    kind = draw(st.sampled_from(["hpa", "kpa", "keda", "ray_serve"]))
    min_replicas = draw(st.sampled_from([0, 1, 2])) if kind in ("kpa", "keda") else draw(st.sampled_from([1, 2]))
    autoscaling: dict[str, Any] = {"kind": kind, "min_replicas": min_replicas, "max_replicas": draw(st.integers(3, 14))}
    if kind == "hpa":
        autoscaling.update(metric=draw(st.sampled_from(["utilization", "concurrency", "rps", "queue_length"])),
                           target=draw(st.sampled_from([0.5, 2.0, 40.0])))  # fmt: skip
    elif kind == "kpa":
        autoscaling.update(target=draw(st.sampled_from([1.0, 3.0])))
    elif kind == "keda":
        autoscaling.update(target=draw(st.sampled_from([2.0, 10.0])), polling_interval_s=5, cooldown_period_s=30)
    else:
        autoscaling.update(target_ongoing_requests=2, upscale_delay_s=5, downscale_delay_s=30)
    peak = draw(st.sampled_from([50.0, 200.0, 600.0]))
    serving: dict[str, Any] = {
        "mode": "realtime",
        "replicas": max(min_replicas, 1) if kind not in ("kpa", "keda") or min_replicas else 0,
        "instances_per_replica": draw(st.integers(1, 2)),
        "batching": {"max_batch_size": draw(st.sampled_from([1, 4])), "max_wait_ms": draw(st.sampled_from([0, 3]))},
        "load_balancer": draw(st.sampled_from(["round_robin", "random", "least_outstanding", "power_of_two"])),
        "autoscaling": autoscaling,
        "cold_start": {"warm_pool": draw(st.integers(0, 2)),
                       "provisioning_s": {"kind": "uniform", "low_s": 5, "high_s": 20},
                       "model_load_s": {"kind": "fixed", "value_s": draw(st.sampled_from([1, 4]))}},
        "zero_replicas": {"action": draw(st.sampled_from(["buffer", "reject"]))},
    }  # fmt: skip
    if draw(st.booleans()):
        serving["timeout_ms"] = draw(st.sampled_from([50.0, 2000.0]))
    if draw(st.booleans()):
        serving["frontend"] = {"workers": draw(st.integers(1, 2)), "per_request_ms": 1.0,
                               "cv": draw(st.sampled_from([0.0, 0.5]))}  # fmt: skip
    if draw(st.booleans()):
        serving["spot"] = {"fraction": 0.5, "usd_per_hour": 0.3, "interruptions_per_hour": 20, "notice_s": 10}
    data = {
        "name": "autoscaled", "duration_s": 240, "seed": draw(st.integers(0, 2**31)),
        "workload": {"arrival": {"kind": "steps", "steps": [
            {"start_s": 0, "rate_rps": peak / 10}, {"start_s": 60, "rate_rps": peak},
            {"start_s": 150, "rate_rps": draw(st.sampled_from([0.0, peak / 20]))}]}},
        "service": {"kind": "linear", "base_ms": 8.0, "per_item_ms": 4.0, "cv": 0.3},
        "hardware": {"name": "hw", "usd_per_hour": 1.0},
        "serving": serving,
    }  # fmt: skip
    return validate_scenario(data, "hypothesis")


@settings_for(max_examples=12)
@given(autoscaled_scenarios())
def test_random_autoscaled_fleets_run_identically(scenario: Scenario) -> None:
    assert_same_run(scenario)


@pytest.mark.parametrize("replicas", [1, 3])
def test_exact_ties_resolve_as_in_simpy(replicas: int) -> None:
    # Times on one grid: an arrival every 1 ms, a 1 ms window, 0.1 ms batches. A window closes at the
    # instant the next request arrives, up to how each engine rounds its clock: the compiled engine
    # schedules every event as SimPy does (clock + (t - clock)), so it resolves each tie the same way.
    scenario = make_scenario(
        "duration_s=0.5", f"serving.replicas={replicas}",
        workload={"arrival": {"kind": "constant", "rate_rps": 1000.0}},
        service={"kind": "deterministic", "mean_ms": 0.1},
        serving={"mode": "realtime", "replicas": replicas, "batching": {"max_batch_size": 2, "max_wait_ms": 1.0}},
    )  # fmt: skip
    simpy_run, _ = assert_same_run(scenario)
    if replicas == 1:
        assert 1.0 < simpy_run.summary["batch_size"]["mean"] < 2.0  # ties went both ways: the test bites

"""Hypothesis strategies: small random real-time scenarios that simulate in well under a second.

Every serving knob is drawn: arrival kind (poisson, gamma, constant, mmpp), service kind
(deterministic, exponential, lognormal, linear), 1-4 replicas, 1-3 instances each, batching (max batch
1-8, window 0-5 ms), queue capacity, queue timeout, load balancer, response cache, fixed overhead.
Loads run from light to well past saturation. Each replication sees at most ~1,200 arrivals.

Hypothesis runs derandomized (`SETTINGS`): the examples are a fixed function of the test, so the
suite is deterministic.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from capsim.scenario import Scenario, validate_scenario
from capsim.serving.dataplane.balancers import BALANCERS

MAX_ARRIVALS = 1_200


def settings_for(max_examples: int) -> settings:
    """Deterministic, deadline-free hypothesis settings."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _ms(low: float, high: float) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 3))


@st.composite
def services(draw: st.DrawFn, mean_ms: float) -> dict[str, Any]:
    """A service-time model whose batch of one takes `mean_ms` on average."""
    kind = draw(st.sampled_from(["deterministic", "exponential", "lognormal", "linear"]))
    if kind == "deterministic":
        return {"kind": kind, "mean_ms": mean_ms, "per_item_ms": draw(st.sampled_from([0.0, mean_ms / 4]))}
    if kind == "exponential":
        return {"kind": kind, "mean_ms": mean_ms}
    if kind == "lognormal":
        return {"kind": kind, "mean_ms": mean_ms, "cv": draw(st.sampled_from([0.1, 0.5, 1.0, 2.5]))}
    share = draw(st.sampled_from([0.0, 0.5, 0.9]))  # fixed part of a batch of one
    return {
        "kind": kind,
        "base_ms": round(mean_ms * share, 6),
        "per_item_ms": round(mean_ms * (1 - share), 6),
        "cv": draw(st.sampled_from([0.0, 0.0, 0.2, 1.0])),
    }


@st.composite
def arrivals(draw: st.DrawFn, rate_rps: float) -> dict[str, Any]:
    kind = draw(st.sampled_from(["poisson", "gamma", "constant", "mmpp"]))
    if kind == "poisson":
        return {"kind": kind, "rate_rps": rate_rps}
    if kind == "gamma":
        return {"kind": kind, "rate_rps": rate_rps, "cv": draw(_ms(0.2, 4.0))}
    if kind == "constant":
        return {"kind": kind, "rate_rps": rate_rps, "offset_s": draw(st.sampled_from([0.0, 0.0013]))}
    return {
        "kind": kind,
        "on_rate_rps": rate_rps * 2,
        "off_rate_rps": draw(st.sampled_from([0.0, rate_rps / 4])),
        "mean_on_s": draw(_ms(0.05, 1.0)),
        "mean_off_s": draw(_ms(0.05, 1.0)),
    }


@st.composite
def scenario_dicts(draw: st.DrawFn, *, price: bool = True) -> dict[str, Any]:
    """A raw scenario mapping (validated by `scenarios`)."""
    duration_s = draw(st.sampled_from([0.5, 1.0, 2.0, 4.0]))
    rate_rps = draw(st.sampled_from([20.0, 100.0, 300.0, 1000.0, 3000.0]))
    rate_rps = min(rate_rps, MAX_ARRIVALS / duration_s / 2)  # mmpp peaks at twice the rate
    replicas, instances = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    # Offered load per executor with batches of one, from light to well past saturation.
    rho = draw(st.sampled_from([0.1, 0.4, 0.7, 0.9, 1.0, 1.3, 2.5]))
    mean_ms = round(rho * replicas * instances / rate_rps * 1000.0, 6)
    serving: dict[str, Any] = {
        "mode": "realtime",
        "replicas": replicas,
        "instances_per_replica": instances,
        "batching": {
            "max_batch_size": draw(st.sampled_from([1, 1, 2, 3, 8])),
            "max_wait_ms": draw(st.sampled_from([0.0, 0.0, 0.05, 1.0, 5.0, round(mean_ms, 6)])),
        },
        "load_balancer": draw(st.sampled_from(list(BALANCERS))),  # every registered one
        "overhead_ms": draw(st.sampled_from([0.0, 0.0, 1.5])),
    }
    capacity = draw(st.sampled_from([None, None, 1, 2, 5, 20]))
    if capacity is not None:
        serving["queue_capacity"] = capacity
    timeout_ms = draw(st.sampled_from([None, None, 0.5, 3.0, 20.0, round(2 * mean_ms, 6)]))
    if timeout_ms is not None:
        serving["timeout_ms"] = timeout_ms
    hit_ratio = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5]))
    if hit_ratio:
        serving["cache"] = {"hit_ratio": hit_ratio, "latency_ms": draw(st.sampled_from([0.0, 0.4]))}
    return {
        "name": "property",
        "duration_s": duration_s,
        "warmup_s": draw(st.sampled_from([0.0, duration_s / 10])),
        "seed": draw(st.integers(0, 2**32)),
        "workload": {"arrival": draw(arrivals(rate_rps))},
        "service": draw(services(mean_ms)),
        "hardware": {"name": "hw", "usd_per_hour": draw(st.sampled_from([0.1, 1.0, 3.06])) if price else 0.0},
        "serving": serving,
    }


def scenarios() -> st.SearchStrategy[Scenario]:
    """Validated small scenarios."""
    return scenario_dicts().map(lambda data: validate_scenario(data, "hypothesis"))


def busy_scenarios() -> st.SearchStrategy[Scenario]:
    """Scenarios whose every replication surely completes model-served requests: renewal arrivals
    with at least ~100 expected in the window, a timeout (if any) longer than the service, and a
    cache that misses at least half the time."""

    def busy(data: dict[str, Any]) -> dict[str, Any]:
        arrival = data["workload"]["arrival"]
        if arrival["kind"] == "mmpp":
            data["workload"]["arrival"] = {"kind": "poisson", "rate_rps": arrival["on_rate_rps"] / 2}
        rate = data["workload"]["arrival"]["rate_rps"]
        data["workload"]["arrival"]["rate_rps"] = max(rate, 100.0 / data["duration_s"])
        data["serving"].pop("timeout_ms", None)
        return data

    return scenario_dicts().map(busy).map(lambda data: validate_scenario(data, "hypothesis"))

"""Invariants of every streaming run (hypothesis over small random topics and groups, derandomized):
conservation of events, records scored once, lag never negative and equal to the arrived-unscored
count, utilization <= 1, consumers <= partitions under KEDA, same seed → same summary."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from capsim.engine import simulate
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT
from capsim.scenario import Scenario, validate_scenario
from tests.property.strategies import arrivals, services, settings_for


@st.composite
def streaming_scenarios(draw: st.DrawFn) -> Scenario:
    duration_s = draw(st.sampled_from([2.0, 5.0, 20.0]))
    rate_rps = draw(st.sampled_from([20.0, 100.0, 300.0]))
    rate_rps = min(rate_rps, 1200 / duration_s / 2)
    partitions = draw(st.integers(1, 6))
    consumers = draw(st.integers(1, 8))
    rho = draw(st.sampled_from([0.2, 0.7, 1.0, 1.5]))  # offered load per consumer with polls of one
    mean_ms = round(rho * min(partitions, consumers) / rate_rps * 1000.0, 6)
    serving: dict[str, Any] = {
        "mode": "streaming",
        "partitions": partitions,
        "consumers": consumers,
        "partitioner": draw(st.sampled_from(["keyed", "round_robin"])),
        "max_poll_records": draw(st.sampled_from([1, 3, 50, 500])),
        "fetch_max_wait_ms": draw(st.sampled_from([0.0, 5.0, 500.0])),
        "fetch_min_records": draw(st.sampled_from([1, 1, 4])),
        "rebalance": {"protocol": draw(st.sampled_from(["eager", "cooperative"])),
                      "pause_s": draw(st.sampled_from([0.0, 0.3]))},
    }  # fmt: skip
    if draw(st.booleans()):
        serving["consumers"] = min(consumers, partitions)
        serving["autoscaling"] = {
            "kind": "keda_kafka", "min_replicas": 1, "max_replicas": draw(st.sampled_from([2, 10])),
            "lag_threshold": draw(st.sampled_from([1, 5])), "hpa_sync_period_s": 0.5, "polling_interval_s": 1.0,
            "scale_down": {"stabilization_window_s": 1, "policies": [{"type": "Percent", "value": 100, "period_s": 1}]},
        }  # fmt: skip
        serving["consumers"] = min(serving["consumers"], serving["autoscaling"]["max_replicas"])
        serving["cold_start"] = {"provisioning_s": {"kind": "fixed", "value_s": 0.2},
                                 "image_pull_s": {"kind": "fixed", "value_s": 0.1},
                                 "model_load_s": {"kind": "fixed", "value_s": 0.1}}  # fmt: skip
    data = {
        "name": "property-streaming",
        "duration_s": duration_s,
        "warmup_s": draw(st.sampled_from([0.0, duration_s / 10])),
        "seed": draw(st.integers(0, 2**32)),
        "workload": {"arrival": draw(arrivals(rate_rps))},
        "service": draw(services(mean_ms)),
        "hardware": {"name": "hw", "usd_per_hour": 1.0},
        "serving": serving,
    }
    return validate_scenario(data, "hypothesis")


@settings_for(max_examples=60)
@given(scenario=streaming_scenarios())
def test_streaming_invariants(scenario: Scenario) -> None:
    result = simulate(scenario)
    rep = result.replications[0]
    r = rep.requests
    assert r is not None
    summary = result.summary
    outcome = r["outcome"]
    # Conservation: every event is scored or still in flight (lag at the end of the drain).
    assert ((outcome == COMPLETED) | (outcome == IN_FLIGHT)).all()
    counts = summary["requests"]
    assert counts["arrived"] == counts["completed"] + counts["in_flight"]
    assert counts["rejected"] == counts["timed_out"] == 0
    # Each record handed out by a poll once: in completed batches, or in a batch still being scored.
    in_service = int(((outcome == IN_FLIGHT) & np.isfinite(r["start_s"])).sum())
    assert summary["records_scored"] + in_service == int((np.isfinite(r["start_s"])).sum())
    assert summary["records_scored"] == int((outcome == COMPLETED).sum())
    done = outcome == COMPLETED
    assert (r["start_s"][done] >= r["arrival_s"][done]).all()
    assert (r["end_s"][done] > r["start_s"][done]).all()
    assert (r["batch_size"][done] <= scenario.serving.max_poll_records).all()  # type: ignore[union-attr]
    # Lag: never negative, and exactly the events arrived by t and not committed by t.
    ticks, lag = rep.timeseries["time_s"], rep.timeseries["lag_at_tick"]
    assert (lag >= 0).all()
    end = np.where(done, r["end_s"], np.inf)
    expected = np.searchsorted(np.sort(r["arrival_s"]), ticks, side="right") - np.searchsorted(
        np.sort(end), ticks, side="right"
    )
    np.testing.assert_array_equal(lag, expected)
    assert summary["utilization"] <= 1.0 + 1e-9
    serving = scenario.serving
    if serving.autoscaling is not None:  # type: ignore[union-attr]
        partitions = serving.partitions  # type: ignore[union-attr]
        assert all(v <= partitions for _, v in rep.replica_changes["desired"])
        assert all(v <= partitions for _, v in rep.replica_changes["ready"])


@settings_for(max_examples=10)
@given(scenario=streaming_scenarios())
def test_same_seed_same_streaming_summary(scenario: Scenario) -> None:
    assert simulate(scenario).summary == simulate(scenario).summary

"""Invariants of every async-queue run (hypothesis over small random setups, derandomized):
conservation of jobs, FIFO dispatch, the batch and polling rules, utilization <= 1, workers within
the autoscaler's bounds, same seed → same summary."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from capsim.engine import simulate
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT
from capsim.scenario import Scenario, validate_scenario
from capsim.serving.asyncqueue import AsyncServing
from tests.property.strategies import arrivals, services, settings_for


@st.composite
def async_scenarios(draw: st.DrawFn) -> Scenario:
    duration_s = draw(st.sampled_from([2.0, 5.0, 20.0]))
    rate_rps = draw(st.sampled_from([20.0, 100.0, 300.0]))
    rate_rps = min(rate_rps, 1200 / duration_s / 2)
    workers = draw(st.integers(1, 5))
    rho = draw(st.sampled_from([0.2, 0.7, 1.0, 1.5]))
    mean_ms = round(rho * workers / rate_rps * 1000.0, 6)
    serving: dict[str, Any] = {
        "mode": "async",
        "workers": workers,
        "max_batch_size": draw(st.sampled_from([1, 2, 8])),
        "batch_wait_ms": draw(st.sampled_from([0.0, 0.0, 2.0, 50.0])),
        "store_write_ms": draw(st.sampled_from([0.0, 1.0, 30.0])),
        "poll_interval_ms": draw(st.sampled_from([10.0, 250.0, 1000.0])),
    }
    if draw(st.booleans()):
        serving["autoscaling"] = {
            "kind": "keda", "metric": draw(st.sampled_from(["queue_length", "concurrency"])), "target": 5,
            "min_replicas": draw(st.sampled_from([0, 1])), "max_replicas": max(workers, 3),
            "hpa_sync_period_s": 0.5, "polling_interval_s": 1.0, "cooldown_period_s": 1.0,
        }  # fmt: skip
        serving["cold_start"] = {"provisioning_s": {"kind": "fixed", "value_s": 0.2},
                                 "image_pull_s": {"kind": "fixed", "value_s": 0.1},
                                 "model_load_s": {"kind": "fixed", "value_s": 0.1}}  # fmt: skip
    data = {
        "name": "property-async",
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
@given(scenario=async_scenarios())
def test_async_invariants(scenario: Scenario) -> None:
    serving = scenario.serving
    assert isinstance(serving, AsyncServing)
    result = simulate(scenario)
    rep = result.replications[0]
    r = rep.requests
    assert r is not None
    summary = result.summary
    outcome = r["outcome"]
    assert ((outcome == COMPLETED) | (outcome == IN_FLIGHT)).all()
    counts = summary["requests"]
    assert counts["arrived"] == counts["completed"] + counts["in_flight"]
    assert counts["rejected"] == counts["timed_out"] == 0
    done = outcome == COMPLETED
    started = np.isfinite(r["start_s"])
    # FIFO: jobs are taken in submission order (ids increase with arrival time).
    assert (np.diff(r["start_s"][started]) >= 0).all()
    if not started.all():
        assert not started[int(np.argmax(~started)) :].any()  # the unstarted jobs are the newest
    assert (r["batch_size"][started] <= serving.max_batch_size).all()
    assert (r["start_s"][started] >= r["arrival_s"][started]).all()
    # Polling: the client sees a result a whole number (>= 1) of intervals after submitting.
    interval_s = serving.poll_interval_ms / 1000.0
    polls = (r["end_s"][done] - r["arrival_s"][done]) / interval_s
    np.testing.assert_allclose(polls, np.rint(polls), atol=1e-6)
    assert (np.rint(polls) >= 1).all()
    # ...and no earlier than the batch start plus the result write (service time is positive).
    write_s = serving.store_write_ms / 1000.0
    assert (r["end_s"][done] > r["start_s"][done] + write_s - 1e-12).all()
    assert summary["utilization"] <= 1.0 + 1e-9
    delay = summary["poll_delay_ms"]
    if delay["max"] is not None:
        assert 0 <= delay["mean"] <= delay["max"] <= serving.poll_interval_ms + 1e-6
    if serving.autoscaling is not None:
        ready = [v for _, v in rep.replica_changes["ready"]]
        assert max(ready) <= serving.autoscaling.max_replicas


@settings_for(max_examples=10)
@given(scenario=async_scenarios())
def test_same_seed_same_async_summary(scenario: Scenario) -> None:
    assert simulate(scenario).summary == simulate(scenario).summary

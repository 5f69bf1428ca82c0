"""The compiled async loop over a backlog larger than its first job array (65,536 rows), where the
control plane drops the rows no longer read and doubles the array: FIFO service, the statistics
folded in the loop equal to those from the rows, and the concurrency integral still exact."""

from __future__ import annotations

import numpy as np
import pytest

from capsim.engine import simulate
from capsim.metrics.request_log import COMPLETED
from tests.asyncqueue.queue_helpers import in_flight_areas
from tests.scenario_helpers import make_scenario, rows

# 2,000 jobs/s for 60 s against ~400 jobs/s of capacity: ~95,000 jobs wait at the end of the feed.
OVERLOADED = {
    "workload": {"arrival": {"kind": "poisson", "rate_rps": 2000.0}},
    "service": {"kind": "lognormal", "mean_ms": 40.0, "cv": 0.4},
}
SERVING = {"mode": "async", "workers": 4, "max_batch_size": 4, "batch_wait_ms": 2.0, "store_write_ms": 5.0,
           "poll_interval_ms": 500.0}  # fmt: skip


def test_a_backlog_beyond_the_first_array_is_served_fifo_and_folded_as_the_rows_say() -> None:
    scenario = make_scenario("duration_s=60", "warmup_s=5", **OVERLOADED, serving=SERVING)
    with_rows = simulate(scenario)
    r = rows(with_rows)
    assert r["arrival_s"].size > 100_000
    assert with_rows.summary["queue_depth"]["max"] > 65_536  # the array was grown and compacted
    started = np.isfinite(r["start_s"])
    assert (np.diff(r["start_s"][started]) >= 0).all() and not started[int(np.argmin(started)) :].any()
    assert (r["start_s"][started] >= r["arrival_s"][started]).all()
    done = r["outcome"] == COMPLETED
    assert (r["end_s"][done] >= r["start_s"][done] + 0.005).all()
    folded = simulate(scenario, keep_requests=False).summary
    exact = with_rows.summary
    assert folded["requests"] == exact["requests"]
    assert folded["queue_depth"] == {**exact["queue_depth"], "mean": pytest.approx(exact["queue_depth"]["mean"])}
    assert folded["polls_per_job"] == exact["polls_per_job"]
    assert folded["utilization"] == pytest.approx(exact["utilization"], rel=1e-12)
    for block in ("latency_ms", "queue_wait_ms", "result_ms", "poll_delay_ms"):
        assert folded[block]["mean"] == pytest.approx(exact[block]["mean"], rel=1e-9)
        assert folded[block]["p50"] == pytest.approx(exact[block]["p50"], rel=0.01)


def test_the_concurrency_integral_stays_exact_over_a_compacted_backlog() -> None:
    serving = {**SERVING, "poll_interval_ms": 0.001,
               "autoscaling": {"kind": "keda", "metric": "concurrency", "target": 5, "max_replicas": 4}}  # fmt: skip
    scenario = make_scenario("duration_s=60", **OVERLOADED, serving=serving)
    times_s = (20.0, 45.0, 60.0)
    areas, r = in_flight_areas(scenario, 5, times_s)
    assert r["arrival_s"].size > 100_000
    started = np.isfinite(r["start_s"])
    assert (r["start_s"][started] >= r["arrival_s"][started]).all()
    assert (np.diff(r["start_s"][started]) >= 0).all()
    done = r["outcome"] == COMPLETED
    assert (r["end_s"][done] >= r["start_s"][done] + 0.005).all()  # seen after the batch and its write
    polls = (r["end_s"][done] - r["arrival_s"][done]) / 1e-6  # seen at a poll: a whole number of intervals
    np.testing.assert_allclose(polls, np.rint(polls), rtol=0, atol=1e-3)
    stored = np.where(done, r["end_s"], np.inf)  # seen within 1 µs of stored
    for t, area in zip(times_s, areas, strict=True):
        expected = np.clip(np.minimum(stored, t) - r["arrival_s"], 0.0, None).sum()
        assert area == pytest.approx(expected, rel=1e-9, abs=1e-6 * r["arrival_s"].size)

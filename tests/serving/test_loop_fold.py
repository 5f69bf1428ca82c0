"""Without a request log the real-time loop folds each completed request as its batch finishes
(capsim/serving/dataplane/fold.py) and only the rest — rejected, timed out, cache hits, unfinished —
from rows. Every figure must be what the full request log gives: counts and batch sizes exactly,
means, levels and their time series to rounding, percentiles within the histograms' error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capsim import simulate
from capsim.metrics.request_log import FOLDED, IN_FLIGHT, RequestLog
from tests.scenario_helpers import make_scenario

# Two front-end workers with drawn times reorder requests (a batch's requests are then not in arrival
# order, and the loop's tick search walks both ways); timeouts, a queue capacity, cache hits, a
# warm-up and an autoscaler growing an overloaded replica to three (4-s cold starts) make every
# outcome appear.
SERVICE = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 0.8, "cv": 0.3}
COLD_START = {"provisioning_s": {"kind": "fixed", "value_s": 3.0}, "image_pull_s": {"kind": "fixed", "value_s": 0.0},
              "model_load_s": {"kind": "fixed", "value_s": 1.0}}  # fmt: skip
SERVING = {"mode": "realtime", "cold_start": COLD_START}
BUSY = ("duration_s=60", "warmup_s=7", "workload.arrival.rate_rps=1200", "serving.replicas=1",
        "serving.batching.max_batch_size=8", "serving.batching.max_wait_ms=2", "serving.timeout_ms=25",
        "serving.queue_capacity=40", "serving.cache.hit_ratio=0.1", "serving.cache.latency_ms=0.3",
        "serving.overhead_ms=1.5", "serving.frontend.workers=2", "serving.frontend.per_request_ms=0.4",
        "serving.frontend.cv=0.8", "serving.load_balancer=least_outstanding",
        "serving.autoscaling.kind=hpa", "serving.autoscaling.min_replicas=1",
        "serving.autoscaling.max_replicas=3", "serving.autoscaling.metric=utilization",
        "serving.autoscaling.target=0.5", "slo.latency_ms=20", "slo.percentile=99")  # fmt: skip


def test_the_loop_folds_what_the_request_log_gives() -> None:
    scenario = make_scenario(*BUSY, service=SERVICE, serving=SERVING)
    exact, bounded = simulate(scenario), simulate(scenario, keep_requests=False)
    e, b = exact.summary, bounded.summary
    assert e["requests"]["timed_out"] > 0 and e["requests"]["rejected"] > 0 and e["requests"]["cache_hits"] > 0
    assert e["replicas"]["max"] == 3
    assert b["requests"] == e["requests"] and b["batch_size"] == e["batch_size"]
    assert b["slo"]["attainment"] == e["slo"]["attainment"]
    for key, value in e["levels"].items():
        assert math.isclose(b["levels"][key], value, rel_tol=1e-9), key
    for metric in ("latency_ms", "queue_wait_ms"):
        assert math.isclose(b[metric]["mean"], e[metric]["mean"], rel_tol=1e-9), metric
        assert b[metric]["max"] == e[metric]["max"], metric
        for name in ("p50", "p90", "p99"):
            assert b[metric][name] == pytest.approx(e[metric][name], rel=0.011), (metric, name)
    series_e, series_b = exact.replications[0].timeseries, bounded.replications[0].timeseries
    for name in ("arrival_rps", "queue_length", "in_service", "busy_executors", "latency_mean_ms"):
        # (Both sides difference sums of weight × time over ~1,000 intervals: ~1e-8 of rounding apart.)
        np.testing.assert_allclose(series_b[name], series_e[name], rtol=1e-9, atol=1e-7, err_msg=name)


def test_folded_rows_leave_the_log_with_the_finished_prefix() -> None:
    flushed: list[np.ndarray] = []
    log = RequestLog(capacity=4, flush=lambda cols: flushed.append(cols["outcome"].copy()))
    log.append_arrivals(np.array([0.1, 0.2, 0.3]))
    log.outcome[:2] = FOLDED  # the third is still in flight
    log.append_arrivals(np.array([0.4, 0.5]))  # no room: the finished prefix is handed over
    assert [list(block) for block in flushed] == [[FOLDED, FOLDED]]
    assert log.base == 2 and list(log.outcome[: log.size]) == [IN_FLIGHT] * 3

"""Streaming without a request log: the compiled loop folds every scored record into the statistics
(capsim/serving/streaming/fold.py) and must give what the rows give, through KEDA's scaling and the
rebalances it causes."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim import load_scenario, simulate
from tests.scenario_helpers import make_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("protocol", ["eager", "cooperative"])
def test_folded_statistics_equal_the_rows(protocol: str) -> None:
    # Four minutes from 17:00 on the bundled topic: the group grows from 4 consumers, rebalancing.
    scenario = load_scenario(ROOT / "scenarios" / "iot-anomaly-streaming.yaml", [
        "duration_s=240", "warmup_s=30", "workload.arrival.start_time_h=17",
        f"serving.rebalance.protocol={protocol}"])  # fmt: skip
    exact, bounded = simulate(scenario).summary, simulate(scenario, keep_requests=False).summary
    assert exact["replicas"]["rebalances"] > 1
    assert exact["requests"] == bounded["requests"]
    assert exact["slo"]["attainment"] == bounded["slo"]["attainment"]
    assert exact["batch_size"] == bounded["batch_size"]
    for name, value in exact["levels"].items():  # time integrals: the same up to summation order
        assert bounded["levels"][name] == pytest.approx(value, rel=1e-9), name
    for block in ("latency_ms", "queue_wait_ms"):
        assert bounded[block]["mean"] == pytest.approx(exact[block]["mean"], rel=1e-9)
        assert bounded[block]["max"] == exact[block]["max"]
        for key in ("p50", "p90", "p99"):  # the histogram's 0.5% bucket error
            assert bounded[block][key] == pytest.approx(exact[block][key], rel=0.011)


def test_records_left_unscored_at_the_drain_limit_are_counted_once() -> None:
    # One consumer at a twelfth of the offered rate: at the drain limit most records are unscored
    # and one batch is being scored; the loop folded the scored ones, the topic gives the rest.
    scenario = make_scenario(
        "duration_s=20", workload={"arrival": {"kind": "poisson", "rate_rps": 2000.0}},
        service={"kind": "linear", "base_ms": 10.0, "per_item_ms": 5.0},
        serving={"mode": "streaming", "partitions": 3, "consumers": 1, "max_poll_records": 10},
    )  # fmt: skip
    exact, bounded = simulate(scenario).summary, simulate(scenario, keep_requests=False).summary
    assert exact["requests"]["in_flight"] > 10_000
    assert exact["requests"] == bounded["requests"]
    for name, value in exact["levels"].items():
        assert bounded["levels"][name] == pytest.approx(value, rel=1e-9), name
    assert bounded["latency_ms"]["mean"] == pytest.approx(exact["latency_ms"]["mean"], rel=1e-9)

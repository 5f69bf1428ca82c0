"""Streaming without a request log: the compiled loop folds every scored record into the statistics
(capsim/serving/streaming/fold.py) and must give what the rows give, through KEDA's scaling and the
rebalances it causes."""

from __future__ import annotations

from pathlib import Path

import pytest

from capsim import load_scenario, simulate

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

"""The replica front end (`serving.frontend`): a FIFO queue of CPU work before the batcher, checked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.metrics.request_log import COMPLETED, TIMED_OUT
from capsim.stability import estimate_capacity, stability_warnings
from tests.scenario_helpers import make_scenario, rows, trace_arrivals

MS = 1e-3
FRONT_10MS = ("serving.frontend.workers=1", "serving.frontend.per_request_ms=10")


def run(tmp_path: Path, arrivals_ms: list[float], *overrides: str) -> dict[str, np.ndarray]:
    scenario = make_scenario(
        "duration_s=1", "service.mean_ms=1", *overrides,
        workload={"arrival": trace_arrivals(tmp_path, [t * MS for t in arrivals_ms])},
    )  # fmt: skip
    return rows(simulate(scenario))


def test_requests_queue_for_the_front_end_first_come_first_served(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2], *FRONT_10MS)
    # Front end 0-10, 10-20, 20-30 ms; each then takes the idle executor for 1 ms.
    np.testing.assert_allclose(r["start_s"] / MS, [10, 20, 30])
    np.testing.assert_allclose(r["end_s"] / MS, [11, 21, 31])
    assert (r["outcome"] == COMPLETED).all()


def test_two_front_end_workers_halve_the_wait(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2, 3], "serving.frontend.workers=2", "serving.frontend.per_request_ms=10")
    # Workers free at 10 and 11 ms; requests 2 and 3 start there and reach the queue at 20 and 21.
    np.testing.assert_allclose(r["start_s"] / MS, [10, 11, 20, 21])


def test_the_batching_window_counts_from_entering_the_batchers_queue(tmp_path: Path) -> None:
    r = run(tmp_path, [0], *FRONT_10MS, "serving.batching.max_batch_size=8", "serving.batching.max_wait_ms=5")
    # It reaches the queue at 10 ms and waits its 5 ms window there (not 5 ms from its arrival).
    np.testing.assert_allclose(r["start_s"] / MS, [15])


def test_a_deadline_that_passes_in_the_front_end_times_the_request_out(tmp_path: Path) -> None:
    r = run(tmp_path, [0, 1, 2], *FRONT_10MS, "serving.timeout_ms=15")
    # Request 0 reaches the queue at 10 (in time); request 1 at 20 > its deadline of 16 ms;
    # request 2 is still in the front end (20-30) at its deadline of 17 ms.
    assert r["outcome"].tolist() == [COMPLETED, TIMED_OUT, TIMED_OUT]
    np.testing.assert_allclose(r["end_s"] / MS, [11, 16, 17])


def test_a_saturated_front_end_caps_throughput_and_the_capacity_estimate_says_so() -> None:
    scenario = make_scenario(
        "duration_s=60", "warmup_s=10", "workload.arrival.rate_rps=300", "service.mean_ms=1",
        "serving.batching.max_batch_size=32", "serving.frontend.workers=1", "serving.frontend.per_request_ms=5",
    )  # fmt: skip
    # The batcher alone could take 32 000 requests/s; the front end takes 200.
    assert estimate_capacity(scenario).capacity_rps == pytest.approx(200.0)
    assert any(w.startswith("unstable") for w in stability_warnings(scenario))
    started_s = rows(simulate(scenario))["start_s"]
    # Overloaded from the start, the front end passes one request per 5 ms: 200/s into the batcher.
    in_window = np.count_nonzero((started_s >= 10.0) & (started_s < 60.0))
    assert in_window == pytest.approx(200 * 50, abs=2)


def test_little_law_holds_with_a_front_end() -> None:
    scenario = make_scenario(
        "duration_s=400", "warmup_s=40", "workload.arrival.rate_rps=60", "service.mean_ms=4",
        "serving.batching.max_batch_size=4", "serving.batching.max_wait_ms=2",
        "serving.frontend.workers=1", "serving.frontend.per_request_ms=8", "serving.frontend.cv=0.5",
    )  # fmt: skip
    summary = simulate(scenario).summary
    in_system = summary["levels"]["queue_length_mean"] + summary["levels"]["in_service_mean"]
    assert in_system == pytest.approx(summary["throughput_rps"] * summary["latency_ms"]["mean"] / 1000, rel=0.03)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_requests_are_conserved_through_scaling_and_spot_interruptions_with_a_front_end(seed: int) -> None:
    scenario = make_scenario(
        f"seed={seed}", "duration_s=900", "service.mean_ms=20", "serving.replicas=2",
        "serving.batching.max_batch_size=4", "serving.batching.max_wait_ms=3", "serving.timeout_ms=400",
        "serving.frontend.workers=1", "serving.frontend.per_request_ms=6",
        "serving.load_balancer=least_outstanding",
        workload={"arrival": {"kind": "steps", "steps": [
            {"start_s": 0, "rate_rps": 80}, {"start_s": 300, "rate_rps": 400}, {"start_s": 600, "rate_rps": 40},
        ]}},
        hardware={"name": "cpu", "usd_per_hour": 1.0},
    )  # fmt: skip
    data = scenario.model_dump()
    data["serving"]["autoscaling"] = {"kind": "hpa", "min_replicas": 1, "max_replicas": 8, "metric": "concurrency",
                                      "target": 2}  # fmt: skip
    data["serving"]["spot"] = {"fraction": 0.5, "usd_per_hour": 0.3, "interruptions_per_hour": 20, "notice_s": 30}
    data["serving"]["cold_start"] = {"provisioning_s": {"kind": "fixed", "value_s": 20}}
    from capsim.scenario import validate_scenario

    result = simulate(validate_scenario(data, "t"))
    r = rows(result)
    counts = result.summary["requests"]
    assert counts["arrived"] == counts["completed"] + counts["rejected"] + counts["timed_out"] + counts["in_flight"]
    assert result.summary["replicas"]["spot_interruptions"] > 0 and result.summary["replicas"]["max"] > 2
    done = r["outcome"] == COMPLETED
    assert (r["start_s"][done] >= r["arrival_s"][done] + 0.006 - 1e-9).all()  # every one passed the front end

"""A blue-green cutover (docs/model.md, "Graphs of models"): a hand-computed timeline of where
requests go and of the replicas billed, and the rollout's validation."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from capsim import simulate
from capsim.errors import CapsimInputError
from capsim.metrics.request_log import COMPLETED
from capsim.scenario import Scenario
from tests.graph.helpers import stage
from tests.scenario_helpers import make_scenario, rows, trace_arrivals

COLD_10_S = {"provisioning_s": {"kind": "fixed", "value_s": 10.0}, "image_pull_s": {"kind": "fixed", "value_s": 0.0},
             "model_load_s": {"kind": "fixed", "value_s": 0.0}}  # fmt: skip
ROLLOUT = {"kind": "blue_green", "blue": "blue", "green": "green", "warm_up_at_s": 30.0, "switch_at_s": 50.0}


def cutover(arrival: dict[str, Any], rollout: dict[str, Any] | None = None, **stages: Any) -> Scenario:
    """Blue: 2 replicas; green: 3 replicas with a 10 s cold start; both 2 s per batch, $1/h each."""
    stages = {"blue": stage(2000, serving={"replicas": 2}),
              "green": stage(2000, serving={"replicas": 3, "cold_start": COLD_10_S}), **stages}  # fmt: skip
    serving = {"mode": "graph", "rollout": rollout or ROLLOUT, "stages": stages}
    return make_scenario(serving=serving, workload={"arrival": arrival})


def test_blue_green_timeline_and_the_bill_of_the_overlap(tmp_path: Path) -> None:
    arrival = trace_arrivals(tmp_path, [0.0, 10.0, 49.5, 50.0, 60.0])
    result = simulate(cutover(arrival))
    r = rows(result)
    # Before the switch (50 s) blue serves; from it on green (ready at 30 + 10 s of cold start).
    np.testing.assert_array_equal(r["version"], [0, 0, 0, 1, 1])
    np.testing.assert_allclose(r["end_s"], [2.0, 12.0, 51.5, 52.0, 62.0])
    assert (r["outcome"] == COMPLETED).all()
    s = result.summary
    assert s["by_version"]["blue"]["requests"]["completed"] == 3
    assert s["by_version"]["green"]["requests"]["completed"] == 2
    # Billed replica-seconds over the 100 s run: blue's idle replica is released at the switch (50),
    # the one serving the 49.5 s request when it drains (51.5); green's 3 from its warm-up (30) on.
    blue_s, green_s = 50.0 + 51.5, 3 * (100.0 - 30.0)
    assert math.isclose(s["stages"]["blue"]["replicas"]["billed_mean"], blue_s / 100.0)
    assert math.isclose(s["stages"]["green"]["replicas"]["billed_mean"], green_s / 100.0)
    assert math.isclose(s["cost"]["usd"], (blue_s + green_s) / 3600.0)
    assert s["stages"]["green"]["replicas"]["cold_starts"] == 3 and s["stages"]["blue"]["replicas"]["cold_starts"] == 0
    # Billed replicas over time: blue 2, + green 3 from the warm-up (the spike), blue gone by 51.5.
    ts = result.replications[0].timeseries
    for t_s, billed, serving in ((20.0, 2, 2), (35.0, 5, 2), (45.0, 5, 5), (50.5, 4, 3), (55.0, 3, 3), (99.0, 3, 3)):
        i = int(np.argmin(np.abs(ts["time_s"] - t_s)))
        assert math.isclose(ts["billed_replicas"][i], billed, abs_tol=1e-9), t_s
        assert ts["replicas"][i] == serving, t_s


def test_a_request_held_by_blue_at_the_switch_finishes_there(tmp_path: Path) -> None:
    # Four requests at 49 s on blue's two replicas (one per batch): two queue and finish at 53 s.
    arrival = trace_arrivals(tmp_path, [0.0, 49.0, 49.0, 49.0, 49.0])
    result = simulate(cutover(arrival))
    r = rows(result)
    np.testing.assert_array_equal(r["version"], [0, 0, 0, 0, 0])
    np.testing.assert_allclose(np.sort(r["end_s"]), [2.0, 51.0, 51.0, 53.0, 53.0])
    blue_s = 53.0 + 53.0  # both replicas drain at 53 s, three seconds after the switch
    assert math.isclose(result.summary["stages"]["blue"]["replicas"]["billed_mean"], blue_s / 100.0)


def test_a_green_not_ready_at_the_switch_holds_requests_until_it_is(tmp_path: Path) -> None:
    # Switch at 35 s, green ready at 40 s: the requests of 36 and 37 s wait in green's activator,
    # which hands both to the first replica ready (served 40-42, 42-44).
    arrival = trace_arrivals(tmp_path, [0.0, 36.0, 37.0])
    r = rows(simulate(cutover(arrival, {**ROLLOUT, "switch_at_s": 35.0})))
    np.testing.assert_array_equal(r["version"], [0, 1, 1])
    np.testing.assert_allclose(r["start_s"], [0.0, 40.0, 42.0])
    np.testing.assert_allclose(r["end_s"], [2.0, 42.0, 44.0])


@pytest.mark.parametrize(("change", "message"), [
    ({"warm_up_at_s": 60.0}, "warm_up_at_s (60) must be at or before switch_at_s"),
    ({"green": "blue"}, "blue and green must be two different stages"),
    ({"green": "v3"}, "rollout.green: unknown stage 'v3'"),
    ({"kind": "canary"}, "blue_green"),
])  # fmt: skip
def test_a_bad_rollout_is_refused_in_one_line(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    arrival = trace_arrivals(tmp_path, [0.0])
    with pytest.raises(CapsimInputError, match="rollout") as caught:
        cutover(arrival, {**ROLLOUT, **change})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_rollout_and_entry_together_and_an_autoscaled_version_are_refused(tmp_path: Path) -> None:
    arrival = trace_arrivals(tmp_path, [0.0])
    both = {"mode": "graph", "rollout": ROLLOUT, "entry": "blue",
            "stages": {"blue": stage(10), "green": stage(10)}}  # fmt: skip
    with pytest.raises(CapsimInputError, match="give either entry"):
        make_scenario(serving=both, workload={"arrival": arrival})
    hpa = {"kind": "hpa", "min_replicas": 1, "max_replicas": 4, "metric": "utilization", "target": 0.6}
    with pytest.raises(CapsimInputError, match=r"stages\.green: a blue-green version is a fixed fleet"):
        cutover(arrival, green=stage(10, serving={"replicas": 1, "autoscaling": hpa}))
    with pytest.raises(CapsimInputError, match="green is a blue-green version"):
        cutover(arrival, blue=stage(10, serving={"replicas": 1}, next={"to": "green"}))

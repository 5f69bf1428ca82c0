"""The lock-step is exact: how often the stages are synchronised changes no result."""

from __future__ import annotations

import numpy as np
import pytest

from capsim import simulate
from capsim.serving.graph import run as graph_run
from capsim.serving.graph.spec import visit_shares
from tests.graph.helpers import graph_scenario, stage
from tests.scenario_helpers import rows

HPA = {"kind": "hpa", "min_replicas": 1, "max_replicas": 6, "metric": "utilization", "target": 0.5}
COLD = {"provisioning_s": {"kind": "fixed", "value_s": 5}, "image_pull_s": {"kind": "fixed", "value_s": 3},
        "model_load_s": {"kind": "fixed", "value_s": 2}}  # fmt: skip


def pipeline() -> object:
    # A chain into a fan-out joined on the first two, then a stage under HPA with cold starts; a
    # 30% route, timeouts and a shadow; traffic that steps up so the autoscaler acts.
    stages = {
        "a": stage(8, "exponential", next={"to": "b", "fraction": 0.7}, shadow=["s"]),
        "b": stage(5, "lognormal", next={"fan_out": ["m1", "m2", "m3"], "first": 2, "then": "c"}, cv=1.0),
        "m1": stage(6, "exponential"),
        "m2": stage(9, "exponential", serving={"timeout_ms": 30}),
        "m3": stage(12, "exponential", serving={"queue_capacity": 4}),
        "c": stage(20, "exponential", serving={"replicas": 1, "autoscaling": HPA, "cold_start": COLD}),
        "s": stage(15, "exponential"),
    }
    for spec in stages.values():
        if "cv" in spec:
            spec["service"]["cv"] = spec.pop("cv")
    steps = {"kind": "steps", "steps": [{"start_s": 0, "rate_rps": 30}, {"start_s": 60, "rate_rps": 70}]}
    return graph_scenario("a", stages, "duration_s=150", "warmup_s=10", workload={"arrival": steps})


# Against the default (every 1 s here): sync every ~21 s, every 3.75 s, or every 0.1 s.
@pytest.mark.parametrize("steps", [7, 40, pytest.param(150_000, marks=pytest.mark.slow)])
def test_results_do_not_depend_on_the_sync_interval(monkeypatch: pytest.MonkeyPatch, steps: int) -> None:
    scenario = pipeline()
    baseline = simulate(scenario)
    monkeypatch.setattr(graph_run, "_SYNC_STEPS", steps)
    monkeypatch.setattr(graph_run, "_MIN_SYNC_S", 0.1 if steps > 1000 else 1.0)
    other = simulate(scenario)
    a, b = rows(baseline), rows(other)
    for name in ("outcome", "version", "batch_size"):
        np.testing.assert_array_equal(a[name], b[name])
    # Event times agree but for the last bit: a stage's clock reads `clock + (t - clock)`, as SimPy
    # computes a timeout, and the clock at a restarted run of arrivals depends on the sync times.
    for name in ("end_s", "start_s"):
        np.testing.assert_allclose(a[name], b[name], rtol=1e-14, atol=0)
    for name, block in baseline.summary["stages"].items():
        assert block["requests"] == other.summary["stages"][name]["requests"]
        assert block["replicas"] == other.summary["stages"][name]["replicas"]
    assert baseline.summary["stages"]["c"]["replicas"]["cold_starts"] > 0  # the autoscaler acted
    outcomes = set(a["outcome"].tolist())
    assert {1, 2, 3} <= outcomes or {1, 3} <= outcomes  # timeouts (and rejections) happen


def test_visit_shares_follow_routes_fan_outs_and_shadows() -> None:
    graph = pipeline().serving
    shares = visit_shares(graph)  # type: ignore[arg-type]
    assert shares == {"a": 1.0, "b": 0.7, "m1": 0.7, "m2": 0.7, "m3": 0.7, "c": 0.7, "s": 1.0}


def test_every_visit_is_accounted_for_at_its_stage_and_end_to_end() -> None:
    summary = simulate(pipeline().model_copy(update={"warmup_s": 0.0})).summary
    stages = summary["stages"]

    def finished(name: str) -> int:
        r = stages[name]["requests"]
        return r["completed"] + r["rejected"] + r["timed_out"]

    for name, block in stages.items():  # each visit completes, is rejected or times out there
        assert block["requests"]["in_flight"] == 0 and finished(name) == block["requests"]["arrived"], name
    e2e = summary["requests"]
    assert e2e["completed"] + e2e["rejected"] + e2e["timed_out"] + e2e["in_flight"] == e2e["arrived"]
    assert stages["a"]["requests"]["arrived"] == stages["s"]["requests"]["arrived"] == e2e["arrived"]
    routed = stages["b"]["requests"]["arrived"]
    assert abs(routed / stages["a"]["requests"]["completed"] - 0.7) < 0.03
    for branch in ("m1", "m2", "m3"):
        assert stages[branch]["requests"]["arrived"] == stages["b"]["requests"]["completed"]
    # Requests that end at a (the 30% not routed) or fail on the way, and those through c.
    assert e2e["completed"] == stages["a"]["requests"]["completed"] - routed + stages["c"]["requests"]["completed"]

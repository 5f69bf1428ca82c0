"""Trace tests of graphs of models: deterministic stages and hand-placed arrivals, so every
request's end-to-end latency is known by hand from the rules in docs/model.md ("Graphs of models")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capsim import simulate
from capsim.metrics.request_log import COMPLETED, REJECTED
from tests.graph.helpers import graph_scenario, stage
from tests.scenario_helpers import rows, trace_arrivals

MS = 1e-3


def fan_out(tmp_path: Path, arrivals_ms: list[float], first: int | None = None, then: bool = False,
            m3: dict | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    # f (10 ms) fans out to m1 (20 ms), m2 (30 ms), m3 (50 ms); each one replica, one executor.
    nxt: dict = {"fan_out": ["m1", "m2", "m3"]}
    if first is not None:
        nxt["first"] = first
    stages = {"f": stage(10, next=nxt), "m1": stage(20), "m2": stage(30), "m3": stage(50, **(m3 or {}))}
    if then:
        nxt["then"] = "vote"
        stages["vote"] = stage(5)
    arrival = trace_arrivals(tmp_path, [t * MS for t in arrivals_ms])
    return rows(simulate(graph_scenario("f", stages, "duration_s=1", workload={"arrival": arrival})))


def test_chain_latency_is_the_sum_of_the_stages_with_queueing_at_each(tmp_path: Path) -> None:
    stages = {"a": stage(10, next={"to": "b"}), "b": stage(30, serving={"overhead_ms": 2.0})}
    arrival = trace_arrivals(tmp_path, [0.0, 5 * MS, 100 * MS])
    r = rows(simulate(graph_scenario("a", stages, "duration_s=1", workload={"arrival": arrival})))
    # a serves 0-10 and 10-20; b serves 10-40 (+2 ms overhead: answered at 42) and 40-70 (72).
    np.testing.assert_allclose(r["end_s"] / MS, [42, 72, 142])
    np.testing.assert_allclose((r["end_s"] - r["arrival_s"]) / MS, [42, 67, 42])
    np.testing.assert_allclose(r["start_s"] / MS, [0, 10, 100])  # the first stage's batch start
    assert (r["outcome"] == COMPLETED).all()


def test_fan_out_join_all_takes_the_slowest_branch(tmp_path: Path) -> None:
    r = fan_out(tmp_path, [0.0, 5.0, 200.0])
    # f answers at 10, 20, 210. m3 serves 10-60 then 60-110 (the second waited 40 ms); 210-260.
    np.testing.assert_allclose(r["end_s"] / MS, [60, 110, 260])


def test_fan_out_first_one_takes_the_fastest_answer(tmp_path: Path) -> None:
    r = fan_out(tmp_path, [0.0, 5.0, 200.0], first=1)
    # m1 serves 10-30 then 30-50: the second's first answer is at 50 (m2's comes at 70: 40-70).
    np.testing.assert_allclose(r["end_s"] / MS, [30, 50, 230])


def test_first_two_then_a_vote_stage(tmp_path: Path) -> None:
    r = fan_out(tmp_path, [0.0, 5.0, 200.0], first=2, then=True)
    # second answers: m2 at 40 and 70; vote (5 ms) serves 40-45 and 70-75, and 240-245.
    np.testing.assert_allclose(r["end_s"] / MS, [45, 75, 245])


def test_a_rejected_branch_fails_a_join_on_all_but_not_a_first_two(tmp_path: Path) -> None:
    full = {"serving": {"queue_capacity": 0}}  # m3 takes no request while it is busy
    r = fan_out(tmp_path, [0.0, 5.0], m3=full)
    # The second reaches m3 at 20 while it serves the first (10-60): rejected there, then.
    assert r["outcome"].tolist() == [COMPLETED, REJECTED]
    np.testing.assert_allclose(r["end_s"] / MS, [60, 20])
    r = fan_out(tmp_path, [0.0, 5.0], first=2, m3=full)
    # With two answers enough, m1 (50) and m2 (70) still answer the second.
    assert r["outcome"].tolist() == [COMPLETED, COMPLETED]
    np.testing.assert_allclose(r["end_s"] / MS, [30 + 10, 70])


def test_stage_blocks_count_every_visit(tmp_path: Path) -> None:
    stages = {"a": stage(10, next={"to": "b"}), "b": stage(30)}
    arrival = trace_arrivals(tmp_path, [0.0, 5 * MS, 100 * MS])
    summary = simulate(graph_scenario("a", stages, "duration_s=1", workload={"arrival": arrival})).summary
    for name, mean_ms in (("a", (10 + 15 + 10) / 3), ("b", (30 + 50 + 30) / 3)):
        block = summary["stages"][name]
        assert block["requests"]["completed"] == 3
        assert abs(block["latency_ms"]["mean"] - mean_ms) < 1e-9
    # Each replica is billed the whole second at 1 USD/h.
    assert abs(summary["cost"]["usd"] - 2 / 3600) < 1e-12

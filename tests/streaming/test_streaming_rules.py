"""Streaming mode: the exact poll rules on hand-made event sequences, the reduction to a single-server
queue, and Kafka's assignors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim.engine import simulate
from capsim.serving.streaming.assignor import range_assignment, round_robin_assignment, sticky_assignment
from tests.scenario_helpers import make_scenario, rows, trace_arrivals


def _streaming(**serving: object) -> dict[str, object]:
    return {"mode": "streaming", "partitions": 1, "consumers": 1, **serving}


@pytest.mark.parametrize("max_poll_records", [1, 8, 500])
@pytest.mark.parametrize("fetch_max_wait_ms", [0.0, 500.0])
def test_one_partition_one_consumer_is_the_single_server_queue(max_poll_records: int, fetch_max_wait_ms: float) -> None:
    # fetch_min_records = 1: a fetch answers as soon as one record is there, whatever the wait, so
    # the consumer is the real-time core's single replica with greedy batching (max_wait_ms 0).
    arrival = {"arrival": {"kind": "poisson", "rate_rps": 100.0}}
    service = {"kind": "exponential", "mean_ms": 8.0}
    stream = make_scenario(workload=arrival, service=service, serving=_streaming(
        max_poll_records=max_poll_records, fetch_max_wait_ms=fetch_max_wait_ms))  # fmt: skip
    batching = {"max_batch_size": max_poll_records, "max_wait_ms": 0}
    core = make_scenario(workload=arrival, service=service,
                         serving={"mode": "realtime", "replicas": 1, "batching": batching})  # fmt: skip
    a, b = rows(simulate(stream)), rows(simulate(core))
    assert a["arrival_s"].size > 9000
    np.testing.assert_array_equal(a["arrival_s"], b["arrival_s"])
    np.testing.assert_array_equal(a["start_s"], b["start_s"])
    np.testing.assert_array_equal(a["end_s"], b["end_s"])
    np.testing.assert_array_equal(a["batch_size"], b["batch_size"])


def _run_trace(tmp_path: Path, times: list[float], **serving: object) -> dict[str, np.ndarray]:
    scenario = make_scenario(
        "duration_s=5", workload={"arrival": trace_arrivals(tmp_path, times)},
        service={"kind": "deterministic", "mean_ms": 10.0}, serving=_streaming(**serving),
    )  # fmt: skip
    return rows(simulate(scenario))


def test_fetch_waits_for_fetch_min_records_or_fetch_max_wait(tmp_path: Path) -> None:
    # fetch_min_records 3, fetch_max_wait 100 ms. Events at 0, 0.01, 0.02: the fetch sent at 0 has
    # its third record at 0.02 → one batch of 3 at 0.02, scored at 0.03. The next fetch goes out at
    # 0.03 and times out empty at 0.13, 0.23, 0.33, 0.43; the one sent at 0.43 sees the event of
    # 0.5 but only one record → it answers at its deadline, 0.53.
    r = _run_trace(tmp_path, [0.0, 0.01, 0.02, 0.5], fetch_min_records=3, fetch_max_wait_ms=100.0)
    np.testing.assert_allclose(r["start_s"], [0.02, 0.02, 0.02, 0.53])
    np.testing.assert_allclose(r["end_s"], [0.03, 0.03, 0.03, 0.54])
    np.testing.assert_array_equal(r["batch_size"], [3, 3, 3, 1])


def test_poll_hands_out_at_most_max_poll_records(tmp_path: Path) -> None:
    # Ten events at once, max_poll_records 4: polls of 4, 4 and 2, each scored in 10 ms (an 11th
    # event long after them gives the trace a span, as traces must have).
    r = {k: v[:10] for k, v in _run_trace(tmp_path, [0.0] * 10 + [1.0], max_poll_records=4).items()}
    np.testing.assert_array_equal(r["batch_size"], [4] * 4 + [4] * 4 + [2] * 2)
    np.testing.assert_allclose(r["start_s"], [0.0] * 4 + [0.01] * 4 + [0.02] * 2)
    np.testing.assert_allclose(r["end_s"], [0.01] * 4 + [0.02] * 4 + [0.03] * 2)


def test_round_robin_partitioner_and_range_assignment(tmp_path: Path) -> None:
    # 4 partitions, 2 consumers, events 0..7 at t = 0: event i is on partition i mod 4; the range
    # assignor gives partitions 0-1 to consumer 0 and 2-3 to consumer 1.
    # A ninth event long after them gives the trace a span (event 8: partition 0, consumer 0).
    times = [0.0] * 8 + [1.0]
    r = _run_trace(tmp_path, times, partitions=4, consumers=2, partitioner="round_robin")
    np.testing.assert_array_equal(r["replica"], [0, 0, 1, 1, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(r["batch_size"], [4] * 8 + [1])
    r = _run_trace(tmp_path, times, partitions=4, consumers=2, partitioner="round_robin", assignor="round_robin")
    np.testing.assert_array_equal(r["replica"], [0, 1, 0, 1, 0, 1, 0, 1, 0])


def test_consumers_beyond_partitions_stay_idle_and_are_billed() -> None:
    scenario = make_scenario(serving=_streaming(partitions=2, consumers=5))
    result = simulate(scenario)
    assert set(np.unique(rows(result)["replica"])) <= {0, 1}
    assert result.summary["replicas"]["billed_mean"] == pytest.approx(5.0)
    assert result.summary["cost"]["usd_per_hour"] == pytest.approx(5.0)  # 5 pods at 1 USD/h
    assert any("idle" in w for w in result.summary["warnings"])


def test_range_and_round_robin_assignors() -> None:
    assert range_assignment(7, [2, 0, 1]) == {0: [0, 1, 2], 1: [3, 4], 2: [5, 6]}
    assert round_robin_assignment(7, [2, 0, 1]) == {0: [0, 3, 6], 1: [1, 4], 2: [2, 5]}
    assert range_assignment(2, [0, 1, 2]) == {0: [0], 1: [1], 2: []}


def test_sticky_assignment_is_balanced_and_moves_only_what_it_must() -> None:
    before = range_assignment(12, [0, 1, 2])  # 4 partitions each
    owners = {p: m for m, parts in before.items() for p in parts}
    after = sticky_assignment(12, [0, 1, 2, 3], owners)
    assert sorted(p for parts in after.values() for p in parts) == list(range(12))
    assert {len(parts) for parts in after.values()} == {3}
    moved = [p for m, parts in after.items() for p in parts if owners.get(p) != m]
    assert len(moved) == 3  # one from each old member, to the newcomer
    assert sorted(after[3]) == sorted(moved)
    # A member leaves: only its partitions move.
    owners = {p: m for m, parts in after.items() for p in parts}
    shrunk = sticky_assignment(12, [0, 1, 3], owners)
    moved = [p for m, parts in shrunk.items() for p in parts if owners.get(p) != m]
    assert sorted(moved) == sorted(after[2])


def test_bounded_memory_mode_gives_the_same_counts_and_close_percentiles() -> None:
    scenario = make_scenario(
        "duration_s=60", workload={"arrival": {"kind": "poisson", "rate_rps": 2000.0}},
        service={"kind": "linear", "base_ms": 2.0, "per_item_ms": 0.5, "cv": 0.3},
        serving={"mode": "streaming", "partitions": 6, "consumers": 3},
    )  # fmt: skip
    exact, bounded = simulate(scenario).summary, simulate(scenario, keep_requests=False).summary
    assert exact["requests"] == bounded["requests"]
    # Lag samples are the same; the time-averaged lag is summed block by block (float rounding).
    assert {**exact["lag"], "mean": 0} == {**bounded["lag"], "mean": 0}
    assert bounded["lag"]["mean"] == pytest.approx(exact["lag"]["mean"], rel=1e-9)
    for key in ("p50", "p99", "max"):
        assert bounded["latency_ms"][key] == pytest.approx(exact["latency_ms"][key], rel=0.01)


def test_lag_at_end_is_read_when_arrivals_stop() -> None:
    # One consumer at twice its capacity: lag grows through the run and is drained afterwards.
    scenario = make_scenario(
        "duration_s=20", workload={"arrival": {"kind": "constant", "rate_rps": 200.0}},
        service={"kind": "deterministic", "mean_ms": 10.0}, serving=_streaming(max_poll_records=1),
    )  # fmt: skip
    summary = simulate(scenario).summary
    assert summary["requests"]["in_flight"] == 0
    assert summary["lag"]["at_end"] == pytest.approx(2000, abs=5)  # 4000 arrived, ~2000 scored by t = 20
    assert summary["lag"]["max"] >= summary["lag"]["at_end"]

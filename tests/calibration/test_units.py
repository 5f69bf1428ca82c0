"""The pieces of calibration on their own: hold-out rules, the search, the comparison statistics,
the replay's pairing of simulated and measured requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim.calibration.compare import batch_distribution, relative_errors
from capsim.calibration.holdout import split
from capsim.calibration.replay import ReplayWorkspace, replay
from capsim.calibration.runfolder import LoadPoint, ServerSettings, read_run_folder
from capsim.calibration.search import nelder_mead
from capsim.errors import CapsimInputError
from tests.calibration.synthetic import write_run_folder


def _point(name: str, step: int, rate: float, batch: int) -> LoadPoint:
    return LoadPoint(run_dir=Path(name), step=step, steps_in_run=4, rate_rps=rate, model="m", start_s=0.0,
                     warmup_s=0.0, duration_s=1.0, requests=pd.DataFrame(), batches=None,
                     server=ServerSettings(max_batch_size=batch, max_wait_ms=1.0))


POINTS = [_point("a", i, r, 8) for i, r in enumerate([40.0, 10.0, 30.0, 20.0])] + \
         [_point("b", i, r, 1) for i, r in enumerate([10.0, 20.0])]


def _labels(points: list[LoadPoint]) -> list[str]:
    return sorted(p.label for p in points)


def test_alternate_holds_out_every_second_load_per_configuration() -> None:
    fit, held = split(POINTS, "alternate")
    # a: loads 10 (#1), 20 (#3), 30 (#2), 40 (#0) -> hold 20 and 40; b: 10 (#0), 20 (#1) -> hold 20.
    assert _labels(held) == ["a#0", "a#3", "b#1"]
    assert _labels(fit) == ["a#1", "a#2", "b#0"]


def test_highest_and_glob_rules() -> None:
    _, held = split(POINTS, "highest")
    assert _labels(held) == ["a#0", "b#1"]
    fit, held = split(POINTS, "b*")
    assert _labels(held) == ["b#0", "b#1"] and len(fit) == 4
    assert split(POINTS, None) == (POINTS, [])
    fit, held = split(POINTS, "server:b1-*")
    assert _labels(held) == ["b#0", "b#1"] and _labels(fit) == ["a#0", "a#1", "a#2", "a#3"]
    with pytest.raises(CapsimInputError, match="configurations: b1-w1-i1, b8-w1-i1"):
        split(POINTS, "server:b4*")


def test_holdout_rules_that_leave_nothing_are_refused() -> None:
    with pytest.raises(CapsimInputError, match="nothing is left to fit"):
        split(POINTS, "*")
    with pytest.raises(CapsimInputError, match="no load point matches"):
        split(POINTS, "zzz")
    with pytest.raises(CapsimInputError, match="holds out nothing"):
        split([POINTS[0]], "alternate")


def test_nelder_mead_finds_the_minimum_of_a_curved_valley() -> None:
    def rosenbrock(x: np.ndarray) -> float:
        return float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)

    result = nelder_mead(rosenbrock, np.array([-1.2, 1.0]), step=0.5, max_evaluations=2000, x_tolerance=1e-6,
                         loss_tolerance=1e-12)
    assert result.converged
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-3)


def test_batch_distribution_counts_batches_not_requests() -> None:
    # Requests of 4 batches of 1, 1 batch of 2 (two requests say 2) and 1 batch of 4 (four say 4).
    per_request = np.array([1, 1, 1, 1, 2, 2, 4, 4, 4, 4])
    dist = batch_distribution(per_request, max_size=4)
    assert dist == pytest.approx({"1": 4 / 6, "2": 1 / 6, "3-4": 1 / 6})


def test_relative_errors_and_distribution_distance() -> None:
    measured = {"throughput_rps": 100.0, "latency_ms": {"p50": 10.0, "p99": 40.0},
                "batch_size": {"mean": 2.0, "distribution": {"1": 0.5, "2": 0.5}}}
    simulated = {"throughput_rps": 99.0, "latency_ms": {"p50": 11.0, "p99": 36.0},
                 "batch_size": {"mean": 2.0, "distribution": {"1": 0.6, "2": 0.3, "3-4": 0.1}}}
    errors = relative_errors(measured, simulated)
    assert errors["throughput_rps"] == pytest.approx(-0.01)
    assert errors["latency_ms.p50"] == pytest.approx(0.1)
    assert errors["latency_ms.p99"] == pytest.approx(-0.1)
    assert errors["queue_wait_ms.p50"] is None  # missing on both sides
    assert errors["batch_size.distribution_tvd"] == pytest.approx(0.2)


def test_replay_pairs_each_simulated_request_with_its_measured_send(tmp_path: Path) -> None:
    run = write_run_folder(tmp_path / "r", [50.0], service={"kind": "deterministic", "mean_ms": 3.0},
                           server={"max_batch_size": 1, "max_wait_ms": 0.0}, overhead_ms=2.0, duration_s=10.0,
                           warmup_s=1.0, overhead_jitter=0.0)
    (point,) = read_run_folder(run)
    with ReplayWorkspace() as workspace:
        sim = replay(point, {"kind": "deterministic", "mean_ms": 3.0}, 2.0, workspace, replications=2)
    sent = point.requests["sent_s"].to_numpy()
    np.testing.assert_allclose(sim.arrival_s, np.tile(sent, 2), atol=1e-6)
    # The same server, the same arrivals, no randomness: the replay reproduces every latency.
    measured_ms = point.requests["latency_ms"].to_numpy()
    np.testing.assert_allclose((sim.end_s - sim.arrival_s)[: len(sent)] * 1000.0, measured_ms, atol=1e-3)


def test_profile_mean_never_extrapolates_below_the_largest_measured_batch(tmp_path: Path) -> None:
    """A calibrated profile's outermost sizes can be noisy (here 4 is faster than 2): extrapolating
    the mean along them must not reach 0 — capacity estimates divide by it."""
    from capsim.servicetime import Profile, ProfileService

    samples = {1: np.full(10, 1.0), 2: np.full(10, 0.09), 4: np.full(10, 0.05)}
    path = tmp_path / "p.json"
    Profile.from_samples(samples).write(path)
    service = ProfileService(path=str(path))
    assert service.mean_s(16) == pytest.approx(0.05e-3)
    assert service.mean_s(16) == pytest.approx(float(service.quantiles_s(16).mean()), rel=0.01)

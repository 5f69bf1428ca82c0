"""Round trip with a front end: a server simulated WITH `serving.frontend` is calibrated back to it.

The "server": one front-end worker taking a fixed 2 ms per request (FIFO, as the reference server's
event loop), then the batcher (max batch 8, 2 ms window counted from queue entry) and a linear batch
curve (4 ms + 1 ms per request, cv 0.2); 1.5 ms of client-side overhead jittered ±10%. At 150, 300
and 420 req/s the front end is 30%, 60% and 84% busy, so its queueing, not a constant, shapes the
latency at the higher loads. The white box fits 150 and 420 and predicts 300.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim.calibration import calibrate
from capsim.calibration.frontend_fit import fifo_departures_s
from capsim.calibration.validate import validate_run
from tests.calibration.synthetic import write_run_folder

SERVICE = {"kind": "linear", "base_ms": 4.0, "per_item_ms": 1.0, "cv": 0.2}
SERVER = {"max_batch_size": 8, "max_wait_ms": 2.0}
FRONTEND = {"workers": 1, "per_request_ms": 2.0, "cv": 0.0}
OVERHEAD_MS = 1.5
RATES_RPS = [150.0, 300.0, 420.0]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("fe") / "run", RATES_RPS, service=SERVICE, server=SERVER,
                            overhead_ms=OVERHEAD_MS, duration_s=20.0, frontend=FRONTEND)


def test_fifo_departures_match_the_recursion() -> None:
    rng = np.random.default_rng(3)
    arrival_s = np.sort(rng.uniform(0.0, 1.0, 500))
    service_s = rng.exponential(0.002, 500)
    expected, free_s = [], -np.inf
    for a, s in zip(arrival_s, service_s, strict=True):
        free_s = max(a, free_s) + s
        expected.append(free_s)
    assert np.allclose(fifo_departures_s(arrival_s, service_s), expected, rtol=0, atol=1e-12)


def test_the_synthetic_queue_entry_is_the_simulators(run: Path) -> None:
    # The window counts from queue entry: a batch released by its timer, not by filling up, starts
    # exactly max_wait_ms after its oldest request entered; the reconstruction must show that.
    batches = pd.read_parquet(run / "batches.parquet")
    oldest_s = batches["arrival_s"].map(min).to_numpy(dtype=float)
    waited_ms = (batches["start_s"].to_numpy() - oldest_s) * 1000.0
    # (epoch-second floats resolve ~0.2 µs, hence the tolerance)
    assert (waited_ms >= -1e-3).all()
    assert np.isclose(waited_ms, SERVER["max_wait_ms"], atol=1e-3).mean() > 0.2


def test_white_box_recovers_the_front_end(run: Path) -> None:
    result = calibrate([run], holdout="alternate", replications=2)
    assert result.frontend is not None
    assert result.frontend["workers"] == 1
    assert result.frontend["per_request_ms"] == pytest.approx(FRONTEND["per_request_ms"], rel=0.05)
    assert result.frontend["cv"] < 0.3
    # The constant left outside it is the client overhead alone (its jitter is symmetric).
    assert result.overhead_ms == pytest.approx(OVERHEAD_MS, rel=0.05)
    calibration = result.profile.provenance["calibration"]
    assert calibration["frontend"] == result.frontend
    assert calibration["fit_detail"]["frontend"]["per_point"]
    held = result.holdout_errors
    assert held is not None and held["all"]["points"] == 1
    assert held["all"]["latency_ms.p50"]["max_abs"] < 0.05
    assert held["all"]["latency_ms.p99"]["max_abs"] < 0.10
    assert held["all"]["throughput_rps"]["max_abs"] < 0.03

    # A constant overhead in its place mispredicts the held-out load: the front end's queueing matters.
    constant = calibrate([run], holdout="alternate", replications=2, mechanisms=())
    assert constant.frontend is None
    assert constant.holdout_errors is not None
    assert constant.holdout_errors["all"]["latency_ms.p99"]["max_abs"] > held["all"]["latency_ms.p99"]["max_abs"]


def test_validate_replays_the_profiles_front_end(run: Path, tmp_path: Path) -> None:
    result = calibrate([run], replications=1)
    profile = tmp_path / "p.json"
    result.profile.write(profile)
    with_frontend = validate_run(run, profile, replications=1)
    assert with_frontend.document["frontend"] == result.frontend
    without = validate_run(run, profile, replications=1, frontend=False)
    assert without.document["frontend"] is None
    # Without the front end the replay adds the whole time outside the server as the constant, not
    # the part left outside the front end.
    whole_ms = result.profile.provenance["calibration"]["fit_detail"]["overhead"]["median_ms"]
    assert without.document["overhead_ms"] == pytest.approx(whole_ms)
    assert with_frontend.document["overhead_ms"] == pytest.approx(result.overhead_ms)
    assert whole_ms > result.overhead_ms + 0.5 * FRONTEND["per_request_ms"]
    # At 84% front-end load the queue before the batcher is most of the tail: only the replay with
    # the front end reproduces it.
    heavy = {row["rate_rps"]: row for row in with_frontend.document["points"]}[420.0]
    plain = {row["rate_rps"]: row for row in without.document["points"]}[420.0]
    assert abs(heavy["relative_error"]["latency_ms.p99"]) < 0.10
    assert abs(plain["relative_error"]["latency_ms.p99"]) > abs(heavy["relative_error"]["latency_ms.p99"])

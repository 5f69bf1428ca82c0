"""`serving.frontend.window_late_quantiles_ms`: the batching timer fires late.

Unit rules (draws follow the quantiles; a batch that fills up during the lateness still goes at
once; off by default; bad quantiles are refused), then a round trip: a server simulated with a known
lateness is calibrated back to it, and the held-out load is predicted better with it than without.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from capsim.calibration import calibrate
from capsim.calibration.lateness_fit import QUANTILES, mean_preserving_top
from capsim.cli.main import main
from capsim.engine import simulate
from capsim.scenario import Scenario
from capsim.servicetime import read_profile
from capsim.serving.frontend import FrontEndSpec
from tests.calibration.synthetic import write_run_folder

SERVICE = {"kind": "linear", "base_ms": 2.0, "per_item_ms": 0.5, "cv": 0.2}
SERVER = {"max_batch_size": 8, "max_wait_ms": 2.0}
LATE_MS = [0.0, 4.0]  # uniform 0–4 ms: median 2, p90 3.6
FRONTEND = {"workers": 1, "per_request_ms": 0.5, "cv": 0.0, "window_late_quantiles_ms": LATE_MS}
RATES_RPS = [100.0, 200.0, 300.0]


def test_draws_follow_the_quantiles() -> None:
    spec = FrontEndSpec(per_request_ms=1.0, window_late_quantiles_ms=[0.0, 1.0, 10.0])
    late_ms = spec.window_late_s(np.random.default_rng(1), 20000) * 1000.0
    # Half the mass in [0, 1] ms, half in [1, 10] ms, uniform within each.
    assert np.mean(late_ms <= 1.0) == pytest.approx(0.5, abs=0.02)
    assert np.percentile(late_ms, 75) == pytest.approx(5.5, rel=0.05)
    assert late_ms.min() >= 0.0 and late_ms.max() <= 10.0


def test_off_by_default_and_validated() -> None:
    assert FrontEndSpec(per_request_ms=1.0).window_late_quantiles_ms is None
    with pytest.raises(ValidationError, match="non-decreasing"):
        FrontEndSpec(per_request_ms=1.0, window_late_quantiles_ms=[1.0, 0.5])
    with pytest.raises(ValidationError, match=">= 0"):
        FrontEndSpec(per_request_ms=1.0, window_late_quantiles_ms=[-1.0, 0.5])
    with pytest.raises(ValidationError, match="at least 2"):
        FrontEndSpec(per_request_ms=1.0, window_late_quantiles_ms=[1.0])


def _requests(frontend: dict[str, object], rate_rps: float, max_batch: int) -> pd.DataFrame:
    scenario = Scenario.model_validate({
        "name": "s", "duration_s": 10.0, "seed": 4, "workload": {"arrival": {"kind": "poisson", "rate_rps": rate_rps}},
        "service": {"kind": "linear", "base_ms": 0.1, "per_item_ms": 0.0},
        "hardware": {"name": "h", "usd_per_hour": 0.0},
        "serving": {"mode": "realtime", "replicas": 1, "batching": {"max_batch_size": max_batch, "max_wait_ms": 2.0},
                    "frontend": frontend}})  # fmt: skip
    return simulate(scenario).requests_frame()


def test_a_late_timer_delays_the_window_and_a_full_batch_still_goes() -> None:
    fixed = {"workers": 1, "per_request_ms": 0.001, "window_late_quantiles_ms": [3.0, 3.0]}
    # Light load, batches of one released by the timer: queue wait = window + lateness = 5 ms.
    light = _requests(fixed, 20.0, 8)
    wait_ms = (light["start_s"] - light["arrival_s"]).to_numpy() * 1000.0
    assert np.median(wait_ms) == pytest.approx(5.0 + 0.001, abs=0.01)
    # Heavy load with max batch 2: a second request within the window fills the batch, which goes
    # at once; only lone requests wait for the late timer.
    heavy = _requests(fixed, 2000.0, 2)
    wait_ms = (heavy["start_s"] - heavy["arrival_s"]).to_numpy() * 1000.0
    assert np.mean(wait_ms < 2.0) > 0.5
    assert wait_ms.max() <= 5.0 + 0.01


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run_folder(tmp_path_factory.mktemp("late") / "run", RATES_RPS, service=SERVICE, server=SERVER,
                            overhead_ms=1.0, duration_s=20.0, frontend=FRONTEND)


def test_round_trip_recovers_the_lateness(run: Path) -> None:
    result = calibrate([run], holdout="alternate", replications=2, mechanisms=("frontend", "window_late"))
    assert result.frontend is not None
    quantiles = np.asarray(result.frontend["window_late_quantiles_ms"])
    assert quantiles.size == 1001
    # Uniform 0–4 ms: every quantile recovered within 0.2 ms (batches that filled during the
    # lateness are not timer-released and drop out, which thins the upper end a little).
    assert np.abs(quantiles - np.linspace(0.0, 4.0, 1001)).max() < 0.2
    detail = result.profile.provenance["calibration"]["fit_detail"]
    late = detail["window_late"]
    assert late["median_ms"] == pytest.approx(2.0, abs=0.1)
    # Each mechanism's own error (calibration/mechanism.py): the front end's on the fit points is
    # its fit's loss; the table predicts the held-out points' lateness p50/p90/p99 within 5%.
    assert detail["frontend"]["error"]["fit"] == pytest.approx(detail["frontend"]["loss"])
    assert late["error"]["holdout"] < math.log(1.05) ** 2
    held = result.holdout_errors
    assert held is not None
    assert held["all"]["latency_ms.p50"]["max_abs"] < 0.05
    assert held["all"]["latency_ms.p99"]["max_abs"] < 0.10
    # On time instead, the replay's queue wait is short by the lateness: a larger held-out miss.
    on_time = calibrate([run], holdout="alternate", replications=2)
    assert on_time.holdout_errors is not None
    assert on_time.holdout_errors["all"]["latency_ms.p50"]["max_abs"] > 2 * held["all"]["latency_ms.p50"]["max_abs"]


def test_cli_calibrate_records_it_and_validate_replays_it(
    run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    profile = tmp_path / "p.json"
    assert main(["calibrate", str(run), "-o", str(profile), "--window-lateness", "--replications", "1"]) == 0
    # The table of 1001 quantiles stays in the profile; the console says what it amounts to.
    out = capsys.readouterr().out
    words = " ".join(out.split())  # (the console wraps long lines)
    assert "window_late_quantiles_ms: 1001 quantiles" in words and "batching timer late by" in words
    assert len(out) < 20000
    calibration = read_profile(profile).provenance["calibration"]
    assert len(calibration["frontend"]["window_late_quantiles_ms"]) == 1001
    assert calibration["fit_detail"]["window_late"]["batches"] > 1000
    assert main(["validate", str(run), "--profile", str(profile), "--replications", "1"]) == 0
    document = json.loads((run / "validation.json").read_text())
    assert document["frontend"]["window_late_quantiles_ms"] == calibration["frontend"]["window_late_quantiles_ms"]
    # Without the flag nothing of it is fitted: the profile's front end closes the window on time.
    plain = tmp_path / "plain.json"
    assert main(["calibrate", str(run), "-o", str(plain), "--replications", "1"]) == 0
    assert "window_late_quantiles_ms" not in read_profile(plain).provenance["calibration"]["frontend"]


def test_a_scenario_with_bad_quantiles_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_s: 1\nworkload: {arrival: {kind: poisson, rate_rps: 10}}\n"
        "service: {kind: linear, base_ms: 1, per_item_ms: 0}\nhardware: {name: h, usd_per_hour: 0}\n"
        "serving: {mode: realtime, replicas: 1, frontend: {per_request_ms: 1, window_late_quantiles_ms: [2, 1]}}\n")
    assert main(["simulate", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "window_late_quantiles_ms" in err and "non-decreasing" in err


def test_one_stall_keeps_its_measured_weight_in_the_quantiles() -> None:
    # 4,999 timer releases 0–3 ms late and one 130 ms stall: the top step of the 1001 quantiles would
    # spread 0.1% of the draws evenly up to 130 ms (mean ~66 ms), five times the stall's own weight.
    rng = np.random.default_rng(3)
    values_ms = np.append(rng.uniform(0.0, 3.0, 4999), 130.0)
    raw = np.percentile(values_ms, np.linspace(0.0, 100.0, QUANTILES))
    table = mean_preserving_top(values_ms, raw)
    assert np.array_equal(table[:-1], raw[:-1])
    assert raw[-2] <= table[-1] < raw[-1]

    def implied_mean_ms(quantiles: np.ndarray) -> float:  # linear between evenly spaced levels
        return float(np.mean((quantiles[:-1] + quantiles[1:]) / 2))

    assert implied_mean_ms(table) == pytest.approx(values_ms.mean(), rel=0.005)
    assert implied_mean_ms(raw) > values_ms.mean() * 1.015
    # Fewer samples than steps: the table is left alone.
    few = values_ms[-800:]
    few_raw = np.percentile(few, np.linspace(0.0, 100.0, QUANTILES))
    assert np.array_equal(mean_preserving_top(few, few_raw), few_raw)

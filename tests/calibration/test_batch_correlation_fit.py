"""Round trip of `--batch-correlation`: a server whose batch times run slow together (a known
`service.correlation`) is calibrated back to it, and the held-out load's p99 is predicted far better
with it than by independent draws; calibrate records it, validate replays it (and drops it on
request)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capsim.calibration import calibrate
from capsim.calibration.correlation_fit import fit_acf
from capsim.cli.main import main
from capsim.servicetime import Profile, read_profile
from tests.calibration.synthetic import write_run_folder

TRUE = {"lag1": 0.5, "decay": 0.97}  # a slow state lasting ~30 batches, half the scores' variance
RATES_RPS = [150.0, 250.0, 350.0]  # utilization ~0.35 / 0.55 / 0.8 at 2.25 ms per batch


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corr")
    rng = np.random.default_rng(5)
    Profile.from_samples({1: rng.lognormal(np.log(2.0), 0.5, 20000)}, model={"name": "synthetic"}).write(
        root / "p.json")
    service = {"kind": "profile", "path": str(root / "p.json"), "correlation": TRUE}
    return write_run_folder(root / "run", RATES_RPS, service=service, server={"max_batch_size": 1, "max_wait_ms": 0.0},
                            overhead_ms=1.0, duration_s=20.0)


def test_the_acf_fit_recovers_a_known_curve() -> None:
    lags = np.arange(20)
    assert fit_acf(0.4 * 0.9**lags, "latent") == pytest.approx((0.4, 0.9), abs=1e-3)
    assert fit_acf(0.4 * 0.9**lags, "ar1") == pytest.approx((0.4, 0.4))
    assert fit_acf(-0.1 * 0.5**lags, "latent")[0] == 0.0  # anticorrelation is not a run of slow batches


def test_round_trip_recovers_the_correlation_and_predicts_the_tail(run: Path) -> None:
    result = calibrate([run], holdout="alternate", replications=2, frontend=False, batch_correlation="latent")
    assert result.correlation is not None
    assert result.correlation["lag1"] == pytest.approx(TRUE["lag1"], abs=0.06)
    assert result.correlation["decay"] == pytest.approx(TRUE["decay"], abs=0.02)
    calibration = result.profile.provenance["calibration"]
    assert calibration["service_correlation"] == result.correlation
    assert calibration["fit_detail"]["batch_correlation"]["pairs"] > 5000
    held = result.holdout_errors
    assert held is not None
    p99 = held["all"]["latency_ms.p99"]["max_abs"]
    assert p99 < 0.2
    # Independent draws from the same marginal: the queue behind runs of slow batches is missing.
    iid = calibrate([run], holdout="alternate", replications=2, frontend=False)
    assert iid.correlation is None and "service_correlation" not in iid.profile.provenance["calibration"]
    assert iid.holdout_errors is not None
    assert iid.holdout_errors["all"]["latency_ms.p99"]["max_abs"] > 3 * p99
    # A plain AR(1) matched to lag 1 forgets the slow state within a few batches: most of the miss stays.
    ar1 = calibrate([run], holdout="alternate", replications=2, frontend=False, batch_correlation="ar1")
    assert ar1.correlation is not None and ar1.correlation["decay"] == ar1.correlation["lag1"]
    assert ar1.holdout_errors is not None
    assert ar1.holdout_errors["all"]["latency_ms.p99"]["max_abs"] > 2 * p99


def test_cli_records_it_and_validate_replays_or_drops_it(run: Path, tmp_path: Path) -> None:
    profile = tmp_path / "p.json"
    assert main(["calibrate", str(run), "-o", str(profile), "--no-frontend", "--batch-correlation", "latent",
                 "--replications", "1"]) == 0
    recorded = read_profile(profile).provenance["calibration"]["service_correlation"]
    assert recorded["lag1"] > 0.4
    assert main(["validate", str(run), "--profile", str(profile), "--replications", "1"]) == 0
    replayed = json.loads((run / "validation.json").read_text())
    assert replayed["service_correlation"] == recorded
    assert main(["validate", str(run), "--profile", str(profile), "--replications", "1",
                 "--no-batch-correlation"]) == 0
    dropped = json.loads((run / "validation.json").read_text())
    assert dropped["service_correlation"] is None
    # Independent draws put the highest load's p99 well below the correlated replay's.
    p99 = [r["simulated"]["latency_ms"]["p99"] for r in replayed["points"]]
    p99_iid = [r["simulated"]["latency_ms"]["p99"] for r in dropped["points"]]
    assert p99_iid[-1] < 0.7 * p99[-1]


def test_bad_flag_is_one_clear_line(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", str(run), "-o", str(tmp_path / "p.json"), "--batch-correlation", "markov"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--batch-correlation" in err and "latent" in err

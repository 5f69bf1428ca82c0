"""`service.correlation` on a profile service: successive batch times correlated in batch order.

The marginal must stay exactly the profile's, the autocorrelation must follow lag1 · decay^(k−1),
the default must be today's independent draws, the compiled engine must refuse it rather than
ignore it, and bad settings are one clear line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.special import ndtri

from capsim.cli.main import main
from capsim.errors import CapsimInputError
from capsim.scenario import Scenario
from capsim.servicetime import Profile, ProfileService
from capsim.servicetime.correlation import BatchCorrelation
from capsim.serving.dataplane.support import choose_engine


def _profile(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    samples = {1: rng.lognormal(np.log(2.0), 0.5, 4000), 4: rng.lognormal(np.log(5.0), 0.3, 4000)}
    path = tmp_path / "p.json"
    Profile.from_samples(samples, model={"name": "m"}).write(path)
    return path


def _acf(z: np.ndarray, lag: int) -> float:
    return float(np.corrcoef(z[:-lag], z[lag:])[0, 1])


def test_the_marginal_stays_the_profiles_and_the_acf_follows_the_curve(tmp_path: Path) -> None:
    path = _profile(tmp_path)
    plain = ProfileService(path=str(path))
    correlated = ProfileService(path=str(path), correlation={"lag1": 0.4, "decay": 0.95})
    draw_plain, draw_corr = plain.sampler(np.random.default_rng(1)), correlated.sampler(np.random.default_rng(2))
    n = 100_000
    a = np.array([draw_plain(1) for _ in range(n)])
    b = np.array([draw_corr(1) for _ in range(n)])
    # Same distribution: every decile within 2% (correlated draws are noisier estimates, hence not 0.5%).
    levels = np.linspace(5, 95, 19)
    assert np.allclose(np.percentile(b, levels), np.percentile(a, levels), rtol=0.02)
    # Independent draws have no autocorrelation; correlated ones follow lag1 · decay^(k-1).
    ranks_a = ndtri((a.argsort().argsort() + 0.5) / n)
    ranks_b = ndtri((b.argsort().argsort() + 0.5) / n)
    assert abs(_acf(ranks_a, 1)) < 0.02
    for lag, expected in ((1, 0.4), (2, 0.38), (10, 0.4 * 0.95**9), (20, 0.4 * 0.95**19)):
        assert _acf(ranks_b, lag) == pytest.approx(expected, abs=0.04)
    # Slow batches come in runs: after a batch above the 95th percentile, the next is above it far
    # more often than the 5% independent draws give.
    high = b >= np.percentile(b, 95)
    assert np.mean(high[1:][high[:-1]]) > 0.12


def test_plain_ar1_is_the_default_decay(tmp_path: Path) -> None:
    draw = ProfileService(path=str(_profile(tmp_path)), correlation={"lag1": 0.6}).sampler(np.random.default_rng(3))
    x = np.array([draw(4) for _ in range(50_000)])
    z = ndtri((x.argsort().argsort() + 0.5) / x.size)
    assert _acf(z, 1) == pytest.approx(0.6, abs=0.03)
    assert _acf(z, 3) == pytest.approx(0.6**3, abs=0.03)


def test_default_draws_are_unchanged_and_the_compiled_engine_refuses_it(tmp_path: Path) -> None:
    path = _profile(tmp_path)
    plain = ProfileService(path=str(path))
    assert plain.correlation is None and plain.batch_time_table(4) is not None
    # The default sampler consumes the stream exactly as before: one uniform per draw.
    draw = plain.sampler(np.random.default_rng(9))
    expected = [float(np.interp(u, plain.profile.quantile_levels, plain.quantiles_s(1)))
                for u in np.random.default_rng(9).random(5)]
    assert [draw(1) for _ in range(5)] == pytest.approx(expected, rel=1e-12)
    correlated = ProfileService(path=str(path), correlation={"lag1": 0.3})
    assert correlated.batch_time_table(4) is None
    assert correlated.describe()["correlation"] == {"lag1": 0.3, "decay": None}
    scenario = Scenario.model_validate({
        "name": "s", "duration_s": 5.0, "workload": {"arrival": {"kind": "poisson", "rate_rps": 50}},
        "service": {"kind": "profile", "path": str(path), "correlation": {"lag1": 0.3}},
        "hardware": {"name": "h", "usd_per_hour": 0.0}, "serving": {"mode": "realtime", "replicas": 1}})  # fmt: skip
    with pytest.raises(CapsimInputError):
        choose_engine(scenario, "compiled")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="lag1"):
        BatchCorrelation(lag1=1.0)
    with pytest.raises(ValidationError, match="lag1"):
        BatchCorrelation(lag1=-0.1)
    with pytest.raises(ValidationError, match="decay"):
        BatchCorrelation(lag1=0.5, decay=0.3)


def test_a_scenario_with_a_bad_correlation_is_one_clear_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = _profile(tmp_path)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_s: 1\nworkload: {arrival: {kind: poisson, rate_rps: 10}}\n"
        f"service: {{kind: profile, path: {path}, correlation: {{lag1: 0.5, decay: 0.2}}}}\n"
        "hardware: {name: h, usd_per_hour: 0}\nserving: {mode: realtime, replicas: 1}\n")
    assert main(["simulate", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "correlation" in err and "decay" in err

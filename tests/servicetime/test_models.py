"""Service-time models: exact means, the requested variability, and measured profiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capsim.errors import CapsimInputError
from capsim.rng import RandomStreams
from capsim.servicetime import (
    DeterministicService,
    ExponentialService,
    LinearService,
    LognormalService,
    Profile,
    ProfileService,
)


def draws(model: object, batch_size: int, n: int = 100_000) -> np.ndarray:
    sample = model.sampler(RandomStreams(1).stream("service"))  # type: ignore[attr-defined]
    return np.array([sample(batch_size) for _ in range(n)])


def test_deterministic_and_exponential() -> None:
    assert np.all(draws(DeterministicService(mean_ms=7), 3, 10) == 0.007)
    values = draws(ExponentialService(mean_ms=20), 1)
    assert values.mean() == pytest.approx(0.020, rel=0.02)
    assert values.std() / values.mean() == pytest.approx(1.0, abs=0.02)


def test_lognormal_mean_and_cv() -> None:
    values = draws(LognormalService(mean_ms=10, cv=0.5), 1, 200_000)
    assert values.mean() == pytest.approx(0.010, rel=0.01)
    assert values.std() / values.mean() == pytest.approx(0.5, rel=0.03)


def test_linear_mean_grows_with_batch_size_and_keeps_cv() -> None:
    model = LinearService(base_ms=5, per_item_ms=0.5, cv=0.2)
    assert model.mean_s(8) == pytest.approx(0.009)
    values = draws(model, 8)
    assert values.mean() == pytest.approx(0.009, rel=0.01)
    assert values.std() / values.mean() == pytest.approx(0.2, rel=0.03)
    assert np.all(draws(LinearService(base_ms=5, per_item_ms=0.5), 4, 10) == pytest.approx(0.007))


def write_profile(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    samples = {1: rng.lognormal(np.log(2.0), 0.1, 5000), 4: rng.lognormal(np.log(4.0), 0.1, 5000),
               16: rng.lognormal(np.log(10.0), 0.1, 5000)}  # fmt: skip
    profile = Profile.from_samples(samples, model={"name": "toy"}, hardware={"name": "cpu"}, source="test")
    path = tmp_path / "toy.json"
    profile.write(path)
    return path


def test_profile_reproduces_measured_distribution_and_interpolates(tmp_path: Path) -> None:
    model = ProfileService(path=str(write_profile(tmp_path)))
    at4 = draws(model, 4, 50_000) * 1000
    measured_p = model.profile.points[1].quantiles_ms
    levels = model.profile.quantile_levels
    for level, expected in zip(levels[1:-1], measured_p[1:-1], strict=False):
        assert np.quantile(at4, level) == pytest.approx(expected, rel=0.02, abs=0.02)
    # Between 4 and 16 the quantile curves blend linearly: batch 10 is halfway.
    assert model.mean_s(10) == pytest.approx(0.5 * (model.mean_s(4) + model.mean_s(16)))
    assert np.median(draws(model, 10, 20_000)) * 1000 == pytest.approx(
        0.5 * (np.median(at4) + model.profile.points[2].quantiles_ms[levels.index(0.5)]), rel=0.02
    )
    # Beyond the largest size it extrapolates along the last segment.
    assert model.mean_s(28) > model.mean_s(16)


def test_profile_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CapsimInputError, match="profile file not found"):
        _ = ProfileService(path=str(tmp_path / "none.json")).profile
    bad = tmp_path / "bad.json"
    data = json.loads(write_profile(tmp_path).read_text())
    data["points"][0]["quantiles_ms"] = data["points"][0]["quantiles_ms"][::-1]
    bad.write_text(json.dumps(data))
    with pytest.raises(CapsimInputError, match="must not decrease with the level") as info:
        _ = ProfileService(path=str(bad)).profile
    assert str(info.value).startswith(f"{bad}: points[0].quantiles_ms[1]: expected at least quantiles_ms[0]")
    bad.write_text("{not json")
    with pytest.raises(CapsimInputError, match="not valid JSON"):
        _ = ProfileService(path=str(bad)).profile

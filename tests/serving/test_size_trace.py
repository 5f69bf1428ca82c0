"""Trace tests with request sizes (docs/model.md "Request size"): batches of known sizes take
exactly the service time of the size rule (total and max), sizes come from their own stream,
profiles interpolate over their size axis, and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.metrics.request_log import COMPLETED
from capsim.servicetime import Profile, ProfilePoint, ProfileService
from capsim.serving.sizes import size_extrapolation_warnings
from tests.scenario_helpers import make_scenario, rows

MS = 1e-3
LINEAR = {"kind": "linear", "base_ms": 2.0, "per_item_ms": 1.0, "per_size_unit_ms": 0.5}


def sized_trace(tmp_path: Path, arrivals_ms: list[float], sizes: list[int]) -> dict[str, object]:
    """A workload replaying `arrivals_ms` whose requests have `sizes` (the trace's `pixels` column)."""
    path = tmp_path / "sized.csv"
    path.write_text("time_s,pixels\n" + "".join(f"{t * MS!r},{n}\n" for t, n in zip(arrivals_ms, sizes, strict=True)))
    return {"arrival": {"kind": "trace", "path": str(path), "time_unit": "s"},
            "size": {"unit": "pixels", "distribution": {"kind": "trace", "column": "pixels"}}}  # fmt: skip


def run(tmp_path: Path, service: dict[str, object], *overrides: str) -> dict[str, np.ndarray]:
    # 0, 1, 2 ms (sizes 4, 10, 6) fill a batch of 3 at 2 ms; 30 ms (size 8) goes alone when its
    # 5 ms window closes at 35 ms.
    workload = sized_trace(tmp_path, [0, 1, 2, 30], [4, 10, 6, 8])
    scenario = make_scenario("duration_s=1", "serving.batching.max_batch_size=3", "serving.batching.max_wait_ms=5",
                             *overrides, workload=workload, service=service)  # fmt: skip
    return rows(simulate(scenario))


def test_total_rule_charges_the_batch_its_summed_size(tmp_path: Path) -> None:
    r = run(tmp_path, LINEAR)
    # Batch 1: 2 + 1 x 3 + 0.5 x (4 + 10 + 6) = 15 ms from 2 ms; batch 2: 2 + 1 + 0.5 x 8 = 7 ms from 35.
    np.testing.assert_allclose(r["start_s"] / MS, [2, 2, 2, 35])
    np.testing.assert_allclose(r["end_s"] / MS, [17, 17, 17, 42])
    assert r["request_size"].tolist() == [4, 10, 6, 8]
    assert (r["outcome"] == COMPLETED).all()


def test_max_rule_pads_the_batch_to_its_largest_request(tmp_path: Path) -> None:
    r = run(tmp_path, {**LINEAR, "size_rule": "max"})
    # Batch 1 padded to 3 x 10 = 30 units: 2 + 3 + 15 = 20 ms; a batch of one is its own max.
    np.testing.assert_allclose(r["end_s"] / MS, [22, 22, 22, 42])


@pytest.mark.parametrize("service", [{"kind": "deterministic", "mean_ms": 10.0},
                                     {"kind": "exponential", "mean_ms": 10.0},
                                     {"kind": "lognormal", "mean_ms": 10.0, "cv": 0.5}])  # fmt: skip
def test_every_parametric_model_adds_the_size_term_to_its_mean(service: dict[str, object]) -> None:
    model = make_scenario(service={**service, "per_size_unit_ms": 0.25}).service
    assert model.mean_s(1, 40.0) == pytest.approx((10.0 + 0.25 * 40.0) * MS)
    assert model.mean_s(1) == pytest.approx((10.0 + 0.25) * MS)  # without sizes: one unit per request


def test_lognormal_with_a_size_term_keeps_its_mean_per_batch(tmp_path: Path) -> None:
    # Sizes 4, 10, 6 and 8 once more, many times over: the mean batch time is the model's mean.
    arrivals = [100.0 * i for i in range(2000)]
    sizes = [4, 10, 6, 8] * 500
    service = {"kind": "lognormal", "mean_ms": 10.0, "cv": 0.5, "per_size_unit_ms": 1.0}
    scenario = make_scenario("duration_s=201", "serving.batching.max_batch_size=1",
                             workload=sized_trace(tmp_path, arrivals, sizes), service=service)  # fmt: skip
    r = rows(simulate(scenario))
    took_ms = (r["end_s"] - r["start_s"]) / MS
    expected_ms = 10.0 + r["request_size"]
    # cv 0.5 over 2000 batches: the mean ratio's standard error is 0.5 / sqrt(2000) = 1.1%; 5 sigma.
    assert np.mean(took_ms / expected_ms) == pytest.approx(1.0, abs=0.056)


def test_sizes_come_from_their_own_stream_and_leave_arrivals_unchanged() -> None:
    plain = rows(simulate(make_scenario("duration_s=20")))
    size = {"unit": "features", "distribution": {"kind": "lognormal", "mean": 50, "cv": 1.0, "max": 400}}
    workload = {"arrival": {"kind": "poisson", "rate_rps": 10.0}, "size": size}
    sized = rows(simulate(make_scenario("duration_s=20", workload=workload)))
    np.testing.assert_array_equal(plain["arrival_s"], sized["arrival_s"])
    assert (plain["request_size"] == 1).all()
    assert sized["request_size"].min() >= 1 and sized["request_size"].max() <= 400
    assert len(np.unique(sized["request_size"])) > 20


def grid_profile(path: Path) -> Path:
    """A profile with a size axis whose every quantile equals its mean (so draws are exact):
    size 10: 5 ms (k=1), 8 ms (k=2); size 30: 9 ms (k=1), 14 ms (k=2)."""
    levels = [0.0, 0.5, 1.0]
    points = [ProfilePoint(batch_size=k, size=size, count=10, mean_ms=ms, quantiles_ms=[ms] * 3)
              for size, k, ms in ((10.0, 1, 5.0), (10.0, 2, 8.0), (30.0, 1, 9.0), (30.0, 2, 14.0))]  # fmt: skip
    Profile(quantile_levels=levels, points=points, size_unit="pixels").write(path)
    return path


def test_profile_interpolates_over_size_and_guards_beyond_its_axis(tmp_path: Path) -> None:
    service = ProfileService(path=str(grid_profile(tmp_path / "p.json")))
    assert service.mean_s(2, 40.0) == pytest.approx(11 * MS)  # per request 20: halfway, (8 + 14) / 2
    assert service.mean_s(1, 20.0) == pytest.approx(7 * MS)  # (5 + 9) / 2
    assert service.mean_s(1, 40.0) == pytest.approx(11 * MS)  # beyond 30: the line 5 -> 9 goes on to 11
    assert service.mean_s(1, 5.0) == pytest.approx(4 * MS)  # below 10: the line goes on down to 4 (never above 5)
    np.testing.assert_allclose(service.quantiles_s(2, 40.0), [11 * MS] * 3)


def test_compiled_runs_draw_the_profile_at_the_batch_size(tmp_path: Path) -> None:
    profile = grid_profile(tmp_path / "p.json")
    workload = sized_trace(tmp_path, [0, 1, 30], [10, 30, 10])
    for rule, batch_ms in (("total", 11.0), ("max", 14.0)):
        service = {"kind": "profile", "path": str(profile), "size_rule": rule}
        scenario = make_scenario("duration_s=1", "serving.batching.max_batch_size=2", "serving.batching.max_wait_ms=5",
                                 workload=workload, service=service)  # fmt: skip
        r = rows(simulate(scenario))
        # Sizes 10 and 30 together: per request 20 (total) or 30 (max, padded); then size 10 alone, 5 ms.
        np.testing.assert_allclose((r["end_s"] - r["start_s"]) / MS, [batch_ms, batch_ms, 5.0])


def test_sizes_beyond_the_size_axis_are_warned_about(tmp_path: Path) -> None:
    profile = str(grid_profile(tmp_path / "p.json"))
    inside = {"unit": "pixels", "distribution": {"kind": "uniform", "low": 10, "high": 30}}
    beyond = {"unit": "pixels", "distribution": {"kind": "uniform", "low": 10, "high": 60}}
    for size, warned in ((inside, False), (beyond, True)):
        scenario = make_scenario(workload={"arrival": {"kind": "poisson", "rate_rps": 10.0}, "size": size},
                                 service={"kind": "profile", "path": profile})  # fmt: skip
        warnings = size_extrapolation_warnings(scenario)
        assert bool(warnings) is warned
        assert not warned or ("10 to 60 pixels" in warnings[0] and "10 to 30" in warnings[0])


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def write_scenario(tmp_path: Path, workload: dict[str, object], service: dict[str, object]) -> Path:
    path = tmp_path / "s.json"  # (JSON is YAML)
    path.write_text(json.dumps({"name": "t", "duration_s": 1, "workload": workload, "service": service,
                                "hardware": {"name": "cpu", "usd_per_hour": 1.0},
                                "serving": {"mode": "realtime", "replicas": 1}}))  # fmt: skip
    return path


def test_a_negative_size_is_one_line_and_exit_2(tmp_path: Path) -> None:
    workload = {"arrival": {"kind": "poisson", "rate_rps": 1}, "size": {"distribution": {"kind": "fixed", "value": -3}}}
    out = capsim("simulate", str(write_scenario(tmp_path, workload, LINEAR)))
    assert out.returncode == 2
    assert "workload.size.distribution" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_sizes_with_a_profile_without_a_size_axis_are_one_line_and_exit_2(tmp_path: Path) -> None:
    flat = tmp_path / "flat.json"
    point = ProfilePoint(batch_size=1, count=1, mean_ms=5.0, quantiles_ms=[5.0, 5.0])
    Profile(quantile_levels=[0.0, 1.0], points=[point]).write(flat)
    workload = {"arrival": {"kind": "poisson", "rate_rps": 1}, "size": {"distribution": {"kind": "fixed", "value": 3}}}
    out = capsim("simulate", str(write_scenario(tmp_path, workload, {"kind": "profile", "path": str(flat)})))
    assert out.returncode == 2
    assert "no size axis" in out.stderr and "service.path" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

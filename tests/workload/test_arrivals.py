"""Arrival processes: exact rates and shapes, no truncation, reproducible from the seed."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim.errors import CapsimInputError
from capsim.rng import RandomStreams
from capsim.workload import (
    ConstantArrival,
    DiurnalArrival,
    GammaArrival,
    MmppArrival,
    PoissonArrival,
    StepsArrival,
    TraceArrival,
)


def rng(name: str = "arrivals") -> np.random.Generator:
    return RandomStreams(seed=3).stream(name)


def gaps_cv(times: np.ndarray) -> float:
    gaps = np.diff(times)
    return float(gaps.std() / gaps.mean())


def test_poisson_rate_and_exponential_gaps() -> None:
    times = PoissonArrival(rate_rps=200).times(rng(), 500.0)
    n = times.size
    assert abs(n - 100_000) < 4 * np.sqrt(100_000)  # Poisson count: within 4 sigma
    assert abs(gaps_cv(times) - 1.0) < 0.02
    assert times[0] >= 0 and times[-1] < 500 and np.all(np.diff(times) >= 0)


def test_chunks_are_seamless_across_boundaries() -> None:
    process = PoissonArrival(rate_rps=50)
    whole = np.concatenate(list(process.chunks(rng(), 2000.0, chunk=1000)))
    again = np.concatenate(list(process.chunks(rng(), 2000.0, chunk=1000)))
    np.testing.assert_array_equal(whole, again)
    assert abs(gaps_cv(whole) - 1.0) < 0.03 and np.all(np.diff(whole) > 0)


def test_constant_is_exactly_paced() -> None:
    times = ConstantArrival(rate_rps=4).times(rng(), 10.0)
    np.testing.assert_allclose(times, np.arange(40) / 4)


@pytest.mark.parametrize("cv", [0.3, 1.0, 3.0])
def test_gamma_has_requested_rate_and_cv(cv: float) -> None:
    times = GammaArrival(rate_rps=100, cv=cv).times(rng(), 2000.0)
    assert abs(times.size / 2000.0 - 100) / 100 < 0.03 * max(cv, 1)
    assert abs(gaps_cv(times) - cv) / cv < 0.05


def test_mmpp_mean_rate_and_burstiness() -> None:
    process = MmppArrival(on_rate_rps=100, off_rate_rps=10, mean_on_s=5, mean_off_s=15)
    times = process.times(rng(), 20_000.0)
    expected = process.mean_rate_rps(20_000.0)
    assert expected == pytest.approx((100 * 5 + 10 * 15) / 20)
    assert abs(times.size / 20_000.0 - expected) / expected < 0.05
    counts = np.bincount((times // 1.0).astype(int))
    assert counts.var() / counts.mean() > 5  # overdispersed: far burstier than Poisson (ratio 1)


def test_steps_rates_per_segment() -> None:
    process = StepsArrival(steps=[{"start_s": 0, "rate_rps": 10}, {"start_s": 100, "rate_rps": 200}])
    times = process.times(rng(), 200.0)
    first, second = np.count_nonzero(times < 100), np.count_nonzero(times >= 100)
    assert abs(first - 1000) < 4 * np.sqrt(1000) and abs(second - 20_000) < 4 * np.sqrt(20_000)
    assert process.mean_rate_rps(200.0) == pytest.approx(105)
    assert process.peak_rate_rps(200.0) == 200


def test_steps_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        StepsArrival(steps=[{"start_s": 10, "rate_rps": 1}, {"start_s": 5, "rate_rps": 2}])


def test_diurnal_follows_its_rate_curve() -> None:
    process = DiurnalArrival(base_rps=20, peak_rps=200, peak_time_h=12, start_time_h=0, period_s=2400)
    times = process.times(rng(), 2400.0)
    assert process.rate_rps(np.array([1200.0]))[0] == pytest.approx(200)  # peak at noon
    assert process.rate_rps(np.array([0.0]))[0] == pytest.approx(20)  # trough at midnight
    edges = np.linspace(0, 2400, 25)
    counts, _ = np.histogram(times, edges)
    mids = 0.5 * (edges[1:] + edges[:-1])
    expected = np.array([np.mean(process.rate_rps(np.linspace(a, b, 201))) * 100 for a, b in itertools.pairwise(edges)])
    z = (counts - expected) / np.sqrt(expected)
    assert np.all(np.abs(z) < 4.5), (mids, counts, expected)


def test_trace_replays_exact_offsets_with_scale_and_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    pd.DataFrame({"ts_ms": [1000, 1500, 3000]}).to_csv(path, index=False)
    trace = TraceArrival(path=str(path), time_column="ts_ms", time_unit="ms")
    np.testing.assert_allclose(trace.times(rng(), 10.0), [0.0, 0.5, 2.0])
    fast = trace.model_copy(update={"rate_scale": 2.0})
    np.testing.assert_allclose(fast.times(rng(), 10.0), [0.0, 0.25, 1.0])
    looped = trace.model_copy(update={"loop": True})
    # One pass lasts the span (2 s) plus one mean gap (1 s): repeats start at 3 s, 6 s, ...
    np.testing.assert_allclose(looped.times(rng(), 7.0), [0, 0.5, 2, 3, 3.5, 5, 6, 6.5])


def test_trace_reads_datetimes_and_parquet(tmp_path: Path) -> None:
    stamps = pd.to_datetime(["2023-11-16 18:15:46.50", "2023-11-16 18:15:46.75", "2023-11-16 18:15:48.00"])
    pd.DataFrame({"TIMESTAMP": stamps}).to_parquet(tmp_path / "t.parquet")
    trace = TraceArrival(path=str(tmp_path / "t.parquet"))
    np.testing.assert_allclose(trace.times(rng(), 10.0), [0.0, 0.25, 1.5])


def test_bundled_azure_trace_loads() -> None:
    path = Path(__file__).resolve().parents[2] / "scenarios" / "data" / "azure-llm-2023-conv.csv"
    times = TraceArrival(path=str(path), time_column="TIMESTAMP").times(rng(), 4000.0)
    assert times.size == 19_366
    assert 3500 < times[-1] < 3502


@pytest.mark.parametrize(
    ("content", "match"),
    [("time_s\n", "no rows"), ("time_s\n0.5\n\n1.0\nabc\n", "time_column"), ("a,b\n1,2\n", "no column 'time_s'")],
)
def test_malformed_traces_name_file_and_field(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    column = "time_s" if "no column" in match else None
    with pytest.raises(CapsimInputError, match=match) as info:
        TraceArrival(path=str(path), time_column=column).times(rng(), 10.0)
    assert str(path) in str(info.value)


def test_named_streams_are_independent_and_reproducible() -> None:
    a1 = RandomStreams(7, 0).stream("arrivals").random(5)
    a2 = RandomStreams(7, 0).stream("arrivals").random(5)
    b = RandomStreams(7, 0).stream("service/replica-0").random(5)
    r1 = RandomStreams(7, 1).stream("arrivals").random(5)
    np.testing.assert_array_equal(a1, a2)
    assert not np.allclose(a1, b) and not np.allclose(a1, r1)


def test_diurnal_thinning_bound_dominates_the_rate_on_every_piece() -> None:
    # Thinning is exact only against a bound at or above the rate everywhere on the piece.
    process = DiurnalArrival(base_rps=5, peak_rps=900, peak_time_h=14, start_time_h=3, period_s=7200)
    generator = rng()
    for _ in range(300):
        start = float(generator.uniform(0, 20_000))
        end = start + float(generator.uniform(0.1, 3000))
        bound = process._max_rate_rps(start, end)
        assert bound >= process.rate_rps(np.linspace(start, end, 2001)).max() - 1e-9
        assert bound <= process.peak_rps + 1e-9

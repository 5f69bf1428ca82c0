"""`serving.stalls`: the stall schedule's arithmetic, its process, and what a replica does with it.

The exact rule (capsim/serving/stalls.py): work progresses at 1/slowdown speed while a stall lasts;
a batch's end and a front-end request's end are computed from their start through the schedule.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from capsim.cli.main import main
from capsim.engine import simulate
from capsim.errors import CapsimInputError
from capsim.rng import RandomStreams
from capsim.scenario import Scenario
from capsim.serving.dataplane.support import choose_engine
from capsim.serving.stalls import StallSchedule, StallSpec

STALLS = {"rate_per_s": 2.0, "duration_ms": 50.0, "slowdown": 4.0}


def _fixed_schedule(slowdown: float) -> StallSchedule:
    schedule = StallSpec(rate_per_s=1.0, duration_ms=1.0, slowdown=slowdown).schedule(np.random.default_rng(0))
    # Two known stalls, [1.0, 1.1) and [1.2, 1.3), then none for a long time.
    schedule.starts_s[:] = [1.0, 1.2, 1e9]
    schedule.ends_s[:] = [1.1, 1.3, 1e9 + 1]
    return schedule


def test_work_is_stretched_exactly_by_the_overlap() -> None:
    s = _fixed_schedule(slowdown=3.0)
    assert s.end_s(0.5, 0.2) == pytest.approx(0.7)  # before any stall: unchanged
    assert s.end_s(1.02, 0.01) == pytest.approx(1.05)  # wholly inside: 3x
    # Starts 0.02 s before the stall, 0.03 s of work left when it begins: 0.09 s of stall time.
    assert s.end_s(0.98, 0.05) == pytest.approx(1.09)
    # Crosses the first stall (0.1 s of stall does 0.0333 s of work) and ends in the gap after it.
    assert s.end_s(0.95, 0.1) == pytest.approx(1.1 + (0.1 - 0.05 - 0.1 / 3))
    # Crosses both stalls.
    assert s.end_s(0.9, 0.5) == pytest.approx(1.3 + (0.5 - 0.1 - 0.1 / 3 - 0.1 - 0.1 / 3))
    # Slowdown 1: no effect at all.
    assert _fixed_schedule(1.0).end_s(0.95, 0.5) == pytest.approx(1.45)


def test_stalls_are_poisson_outside_stalls_and_never_overlap() -> None:
    spec = StallSpec(rate_per_s=0.5, duration_ms=[40.0, 60.0, 80.0], slowdown=2.0)
    schedule = spec.schedule(np.random.default_rng(3))
    horizon_s = 20_000.0
    stalled_s = schedule.stalled_s(horizon_s)
    starts, ends = np.array(schedule.starts_s), np.array(schedule.ends_s)
    assert np.all(starts[1:] > ends[:-1])
    durations_ms = (ends - starts) * 1000.0
    assert durations_ms.min() >= 40.0 and durations_ms.max() <= 80.0
    assert np.median(durations_ms) == pytest.approx(60.0, abs=1.0)
    assert spec.mean_duration_ms == pytest.approx(60.0)
    # Gaps between a stall's end and the next start: exponential with mean 2 s.
    gaps_s = starts[1:] - ends[:-1]
    assert gaps_s.mean() == pytest.approx(2.0, rel=0.03)
    assert np.std(gaps_s) / gaps_s.mean() == pytest.approx(1.0, abs=0.05)
    # Long-run stalled share: duration / (gap + duration).
    assert stalled_s / horizon_s == pytest.approx(0.06 / 2.06, rel=0.05)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValidationError, match="non-decreasing"):
        StallSpec(rate_per_s=1.0, duration_ms=[5.0, 1.0], slowdown=2.0)
    with pytest.raises(ValidationError, match="> 0"):
        StallSpec(rate_per_s=1.0, duration_ms=0.0, slowdown=2.0)
    with pytest.raises(ValidationError, match="at least 2"):
        StallSpec(rate_per_s=1.0, duration_ms=[5.0], slowdown=2.0)
    with pytest.raises(ValidationError):
        StallSpec(rate_per_s=1.0, duration_ms=5.0, slowdown=0.5)
    with pytest.raises(ValidationError):
        StallSpec(rate_per_s=0.0, duration_ms=5.0, slowdown=2.0)


def _scenario(stalls: dict[str, object] | None, frontend: dict[str, object] | None = None,
              service_ms: float = 5.0, rate_rps: float = 10.0) -> Scenario:  # fmt: skip
    serving: dict[str, object] = {"mode": "realtime", "replicas": 1,
                                  "batching": {"max_batch_size": 1, "max_wait_ms": 0.0}}  # fmt: skip
    if stalls is not None:
        serving["stalls"] = stalls
    if frontend is not None:
        serving["frontend"] = frontend
    return Scenario.model_validate({
        "name": "s", "duration_s": 200.0, "seed": 7,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": rate_rps}},
        "service": {"kind": "linear", "base_ms": service_ms, "per_item_ms": 0.0},
        "hardware": {"name": "h", "usd_per_hour": 0.0}, "serving": serving})  # fmt: skip


def _own_schedule(seed: int = 7) -> StallSchedule:
    # The replica's schedule, rebuilt from its named stream: what the simulation must have used.
    return StallSpec.model_validate(STALLS).schedule(RandomStreams(seed, 0).stream("stalls/replica-0"))


def test_each_batch_ends_where_the_schedule_says() -> None:
    frame = simulate(_scenario(STALLS)).requests_frame()
    plain = simulate(_scenario(None)).requests_frame()
    # Common random numbers: stalls draw from their own stream, the arrivals are unchanged.
    np.testing.assert_array_equal(frame["arrival_s"].to_numpy(), plain["arrival_s"].to_numpy())
    schedule = _own_schedule()
    start = frame["start_s"].to_numpy(dtype=float)
    end = frame["end_s"].to_numpy(dtype=float)
    done = np.isfinite(end)
    expected = np.array([schedule.end_s(s, 0.005) for s in start[done]])
    np.testing.assert_allclose(end[done], expected, atol=1e-9)
    stretched = (end[done] - start[done]) > 0.005 + 1e-9
    # Stalls cover ~9% of the time (2/s × 50 ms): about that share of batches overlaps one, and
    # one wholly inside takes 4 × 5 ms.
    assert 0.05 < stretched.mean() < 0.15
    assert (end[done] - start[done]).max() == pytest.approx(0.020, abs=1e-9)
    # Queueing behind a stalled batch: the p99 wait rises; the median barely moves.
    wait = start - frame["arrival_s"].to_numpy()
    plain_wait = (plain["start_s"] - plain["arrival_s"]).to_numpy()
    assert np.percentile(wait, 99) > np.percentile(plain_wait, 99) + 0.002


def test_the_front_end_is_stretched_too() -> None:
    frontend = {"workers": 1, "per_request_ms": 10.0}
    frame = simulate(_scenario(STALLS, frontend, service_ms=0.001, rate_rps=5.0)).requests_frame()
    schedule = _own_schedule()
    arrival = frame["arrival_s"].to_numpy(dtype=float)
    start = frame["start_s"].to_numpy(dtype=float)
    # At 5 req/s a 10 ms front end is rarely busy: a request found it idle when the one before
    # left it before this one arrived; then it reaches the batcher (and, idle too, starts) at the
    # stretched end of its own front-end work.
    alone = np.r_[True, start[:-1] < arrival[1:]]
    expected = np.array([schedule.end_s(a, 0.010) for a in arrival[alone]])
    np.testing.assert_allclose(start[alone], expected, atol=1e-9)
    assert np.mean(start[alone] - arrival[alone] > 0.010 + 1e-9) > 0.05


def test_the_compiled_engine_refuses_stalls_and_auto_picks_simpy() -> None:
    scenario = _scenario(STALLS)
    with pytest.raises(CapsimInputError, match=r"serving\.stalls"):
        choose_engine(scenario, "compiled")
    big = scenario.model_copy(update={"duration_s": 1e6})  # far above auto's threshold
    assert choose_engine(big, "auto") == "simpy"
    assert choose_engine(_scenario(None).model_copy(update={"duration_s": 1e6}), "auto") in ("compiled", "simpy")


def test_a_bad_stalls_field_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "name: s\nduration_s: 1\nworkload: {arrival: {kind: poisson, rate_rps: 10}}\n"
        "service: {kind: linear, base_ms: 1, per_item_ms: 0}\nhardware: {name: h, usd_per_hour: 0}\n"
        "serving: {mode: realtime, replicas: 1, stalls: {rate_per_s: 1, duration_ms: [60, 50], slowdown: 3}}\n")
    assert main(["simulate", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "serving.stalls.duration_ms" in err and "non-decreasing" in err

"""The real-time data plane is the compiled event loop alone (capsim/serving/dataplane): every
real-time run uses it, `--engine` is accepted and ignored, a setting it lacks is refused by name,
and the late batching window draws from its own stream. What the loop computes is specified by the
trace, theory, property and golden tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capsim import simulate
from capsim.errors import CapsimInputError
from capsim.scenario import RealtimeServing, load_scenario
from capsim.serving.dataplane import support
from capsim.serving.dataplane.compiled_cache import drop_stale_cache
from capsim.serving.dataplane.support import choose_engine, compiled_unsupported
from tests.scenario_helpers import make_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_every_real_time_run_is_compiled_and_engine_is_a_no_op() -> None:
    scenario = make_scenario("duration_s=5", "serving.replicas=2", "serving.load_balancer=random")
    default = simulate(scenario)
    assert default.summary["engine"] == "compiled"
    for engine in ("auto", "simpy", "compiled"):
        again = simulate(scenario, engine=engine)  # type: ignore[arg-type]
        assert again.summary == default.summary
        pd.testing.assert_frame_equal(again.requests_frame(), default.requests_frame())


def test_a_setting_the_kernel_lacks_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = make_scenario("serving.cache.hit_ratio=0.2")
    assert compiled_unsupported(scenario) is None
    # As if `hit_ratio` had been added to the schema and not to the kernel.
    monkeypatch.setitem(support._SUPPORTED, "serving.cache", {"latency_ms"})
    assert "serving.cache.hit_ratio" in str(compiled_unsupported(scenario))
    with pytest.raises(CapsimInputError, match=r"serving\.cache\.hit_ratio"):
        choose_engine(scenario)
    assert choose_engine(make_scenario()) == "compiled"  # left at its default, the field is no obstacle
    streaming = load_scenario(SCENARIOS / "iot-anomaly-streaming.yaml")
    assert "serving.mode" in str(compiled_unsupported(streaming))


def test_every_supported_section_names_a_field_of_realtime_serving() -> None:
    # The table is keyed by path: a misspelt section would never be looked into.
    for path, names in support._SUPPORTED.items():
        section = path.split(".")
        assert section[0] == "serving" and len(section) <= 2, path
        if len(section) == 2:
            assert section[1] in RealtimeServing.model_fields and section[1] in support._SUPPORTED["serving"], path
        assert names, path


def _frame(*overrides: str) -> pd.DataFrame:
    scenario = make_scenario("duration_s=20", "workload.arrival.rate_rps=20", "serving.replicas=2",
                             "serving.frontend.workers=1", "serving.frontend.per_request_ms=0.5",
                             "serving.frontend.cv=0.5", "serving.batching.max_batch_size=8", *overrides)  # fmt: skip
    return simulate(scenario).requests_frame()


def test_the_late_window_changes_no_other_draw() -> None:
    late = "serving.frontend.window_late_quantiles_ms=[0, 3]"
    # Greedy batching sets no timer: the lateness is never drawn, and nothing else moves.
    greedy = "serving.batching.max_wait_ms=0"
    pd.testing.assert_frame_equal(_frame(greedy), _frame(greedy, late))
    # With a window at light load every batch waits for its timer, which now fires 0–3 ms late
    # (uniform: 1.5 ms on average); the arrivals are unchanged.
    windowed = "serving.batching.max_wait_ms=2"
    on_time, delayed = _frame(windowed), _frame(windowed, late)
    np.testing.assert_array_equal(on_time["arrival_s"], delayed["arrival_s"])
    wait_on_time = (on_time["start_s"] - on_time["arrival_s"]).mean()
    wait_late = (delayed["start_s"] - delayed["arrival_s"]).mean()
    assert 0.0012 < wait_late - wait_on_time < 0.0018


def test_the_compiled_cache_is_dropped_when_a_file_it_compiles_in_changes(tmp_path: Path) -> None:
    (tmp_path / "dep.py").write_text("A = 1\n")
    cache = tmp_path / "__pycache__"
    cache.mkdir()
    compiled = [cache / "kern.advance-10.py311.nbi", cache / "kern.advance-10.py311.1.nbc"]
    other = cache / "other.f-3.py311.nbi"
    for path in (*compiled, other):
        path.write_text("x")
    drop_stale_cache(tmp_path, "kern", ("dep.py",))  # no record of what it was compiled with: dropped
    assert not any(p.exists() for p in compiled) and other.exists()
    for path in compiled:
        path.write_text("x")  # numba compiles and caches again
    drop_stale_cache(tmp_path, "kern", ("dep.py",))  # nothing changed: kept
    assert all(p.exists() for p in compiled)
    (tmp_path / "dep.py").write_text("A = 2\n")
    drop_stale_cache(tmp_path, "kern", ("dep.py",))
    assert not any(p.exists() for p in compiled) and other.exists()

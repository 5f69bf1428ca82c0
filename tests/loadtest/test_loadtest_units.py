"""Small parts of the harness: Prometheus parsing, sweep planning, flag validation, atomic parts."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from capsim.cli.main import main
from capsim.errors import CapsimInputError
from capsim.loadtest.parts import read_request_parts, write_json_atomic, write_request_part
from capsim.loadtest.prometheus_text import parse_samples
from capsim.loadtest.records import COLUMNS
from capsim.loadtest.settings import LoadTestSettings, build_arrival, parse_steps, parse_sweep, validate_settings
from capsim.loadtest.sweep import SweepPlanner, saturation_reason


def test_prometheus_samples() -> None:
    text = """# HELP x help
# TYPE x counter
x_total 3
queue_size{model="mlp",instance="0"} 2.5
lat_bucket{le="+Inf",model="a\\"b"} 7 1700000000000
weird NaN
bad line here
"""
    samples = parse_samples(text)
    assert samples[0] == ("x_total", "", 3.0)
    assert samples[1] == ("queue_size", "instance=0,model=mlp", 2.5)
    assert samples[2][0] == "lat_bucket" and samples[2][2] == 7.0 and "le=+Inf" in samples[2][1]
    assert math.isnan(samples[3][2])
    assert len(samples) == 4


def step(rate: float, saturated: bool, valid: bool = True) -> dict:
    return {"rate_rps": rate, "saturated": saturated, "valid": valid}


def test_sweep_auto_doubles_then_bisects() -> None:
    plan = SweepPlanner("auto", 10.0, max_steps=8)
    assert plan.next_rate([]) == 10.0
    assert plan.next_rate([step(10, False)]) == 20.0
    done = [step(10, False), step(20, False), step(40, True)]
    assert plan.next_rate(done) == 30.0
    assert plan.next_rate([*done, step(30, False)]) == 35.0
    assert plan.next_rate([*done, step(30, False), step(35, True)]) is None
    assert plan.stop_reason == "saturation bracketed"


def test_sweep_stops_on_generator_limit_and_on_list_end() -> None:
    plan = SweepPlanner("auto", 10.0, max_steps=8)
    assert plan.next_rate([step(10, False, valid=False)]) is None
    assert "generator" in (plan.stop_reason or "")
    fixed = SweepPlanner([5.0, 7.0], 5.0, max_steps=8)
    assert fixed.next_rate([step(5, True)]) == 7.0
    assert fixed.next_rate([step(5, True), step(7, True)]) is None


def test_saturation_rules() -> None:
    base = {"requests": {"arrived": 100, "rejected": 0, "timed_out": 0, "errors": 0}, "achieved_rps": 100.0,
            "throughput_rps": 99.0, "latency_ms": {"p99": 20.0}}
    assert saturation_reason(base, 10.0) is None
    assert "95%" in (saturation_reason({**base, "throughput_rps": 90.0}, 10.0) or "")
    assert "10x" in (saturation_reason(base, 1.0) or "")
    rejected = {**base, "requests": {**base["requests"], "rejected": 5}}
    assert "rejected" in (saturation_reason(rejected, 10.0) or "")


def test_flag_parsing() -> None:
    assert [s.rate_rps for s in parse_steps("0:10, 30:50")] == [10.0, 50.0]
    with pytest.raises(CapsimInputError, match="--steps"):
        parse_steps("0-10")
    assert parse_sweep("auto") == "auto" and parse_sweep("1,2.5") == [1.0, 2.5]
    with pytest.raises(CapsimInputError, match="--sweep"):
        parse_sweep("1,-2")
    assert build_arrival("diurnal", 40.0, 100.0).peak_rate_rps(100.0) == pytest.approx(40.0, rel=1e-3)
    with pytest.raises(CapsimInputError, match="--trace"):
        build_arrival("trace", None, 10.0, trace="/nonexistent.csv")


def test_settings_cross_checks() -> None:
    arrival = build_arrival("poisson", 10.0, 10.0)
    validate_settings(LoadTestSettings(target="http://127.0.0.1:1", arrival=arrival))  # --model: asked later
    with pytest.raises(CapsimInputError, match="--target"):
        validate_settings(LoadTestSettings(target="127.0.0.1:1", model="m", arrival=arrival))
    with pytest.raises(CapsimInputError, match="--warmup"):
        validate_settings(LoadTestSettings(target="http://x:1", model="m", arrival=arrival, duration_s=5, warmup_s=5))
    steps = build_arrival("steps", None, 10.0, steps="0:5")
    with pytest.raises(CapsimInputError, match="--sweep"):
        validate_settings(LoadTestSettings(target="http://x:1", model="m", arrival=steps, sweep=[1.0], warmup_s=0))


@pytest.mark.parametrize(
    ("flags", "flag"),
    [
        (["--rate", "-3"], "--rate"),
        (["--rate", "5", "--duration", "0"], "--duration"),
        (["--rate", "5", "--max-in-flight", "0"], "--max-in-flight"),
        (["--arrival", "steps"], "--steps"),
        (["--rate", "5", "--sweep", "x"], "--sweep"),
        (["--rate", "5", "--protocol", "soap"], "--protocol"),
    ],
)
def test_bad_flags_are_one_line_exit_2(flags: list[str], flag: str, capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    code = main(["loadtest", "--target", "http://127.0.0.1:9", "--model", "m", "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and flag in err[0]


def test_parts_are_atomic_and_readable(tmp_path: Path) -> None:
    rows = {c: [] for c in COLUMNS}
    assert write_request_part(tmp_path, 0, 0, rows) is None
    rows = {"intended_s": [1.0], "sent_s": [1.0], "latency_ms": [2.0], "latency_corrected_ms": [2.0],
            "status": [200], "bytes": [3], "error": [None], "name": ["x"], "worker": [0],
            "server_queue_ms": [None], "server_compute_ms": [1.5], "server_batch_size": [4]}
    path = write_request_part(tmp_path, 0, 1, rows)
    assert path is not None and pq.read_table(path).num_rows == 1
    (tmp_path / "requests-w000-000002.parquet").write_bytes(b"torn")  # never produced, but never fatal
    assert read_request_parts(tmp_path).num_rows == 1
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_event_loop_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    from capsim.loadtest.process import gevent_backend_env

    monkeypatch.delenv("GEVENT_BACKEND", raising=False)
    assert gevent_backend_env(500) == {"GEVENT_BACKEND": "select"}
    assert gevent_backend_env(5000) == {}  # select() cannot watch descriptors >= 1024
    monkeypatch.setenv("GEVENT_BACKEND", "epoll")
    assert gevent_backend_env(500) == {}


def test_finalize_refuses_a_folder_that_is_not_an_unfinished_run(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest-finalize", str(tmp_path)]) == 2
    assert "not an unfinished run folder" in capsys.readouterr().err


def test_zero_workers_needs_remote_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["loadtest", "--target", "http://127.0.0.1:9", "--model", "m", "--rate", "5", "--workers", "0",
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "--workers" in capsys.readouterr().err

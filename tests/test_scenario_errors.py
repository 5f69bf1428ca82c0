"""Bad input gets one line naming the file and the field, and exit code 2 — never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capsim.errors import CapsimInputError
from capsim.scenario import load_scenario
from tests.scenario_helpers import scenario_dict

ISSUE_EXAMPLE = """\
name: mmc-check
duration_s: 20000
warmup_s: 2000
seed: 1
workload:
  arrival: {kind: poisson, rate_rps: 3.0}
service: {kind: exponential, mean_ms: 1000}
hardware: {name: cpu-small, usd_per_hour: 0.10}
serving:
  mode: realtime
  replicas: 1
  instances_per_replica: 4
  batching: {max_batch_size: 1, max_wait_ms: 0}
  load_balancer: round_robin
slo: {latency_ms: 2000, percentile: 99}
"""


def write(tmp_path: Path, data: object, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def capsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "capsim.cli.main", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_issue_example_is_accepted_as_written(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, ISSUE_EXAMPLE))
    assert scenario.serving.instances_per_replica == 4
    assert scenario.workload.arrival.mean_rate_rps(1.0) == 3.0


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        (["serving.replicaz=2"], "serving.replicaz", "unknown key"),
        (["serving.replicas=two"], "serving.replicas", "integer"),
        (["workload.arrival.rate_rps=-5"], "workload.arrival.rate_rps", "greater than 0"),
        (["serving.batching.max_batch_size=0"], "serving.batching.max_batch_size", "greater than or equal to 1"),
        (["warmup_s=500"], None, "warmup_s"),
        (["workload.arrival.kind=lognormal"], "workload.arrival.kind", "expected one of"),
        (["serving.load_balancer=fastest"], "serving.load_balancer", "round_robin"),
    ],
)
def test_bad_fields_are_named(tmp_path: Path, overrides: list[str], field: str | None, words: str) -> None:
    path = write(tmp_path, scenario_dict(*overrides))
    with pytest.raises(CapsimInputError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(str(path))
    if field:
        assert f": {field}: " in message
    assert words in message
    assert "\n" not in message


def test_set_override_is_validated_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict())
    assert load_scenario(path, ["serving.replicas=3"]).serving.replicas == 3
    with pytest.raises(CapsimInputError, match=r"serving\.replicas"):
        load_scenario(path, ["serving.replicas=-1"])


def test_missing_trace_and_malformed_trace(tmp_path: Path) -> None:
    missing = write(tmp_path, scenario_dict(workload={"arrival": {"kind": "trace", "path": "nope.csv"}}))
    with pytest.raises(CapsimInputError, match="trace file not found"):
        load_scenario(missing).workload.arrival.mean_rate_rps(10)
    (tmp_path / "bad.csv").write_text("time_s\n0.0\nbanana\n")
    bad = write(tmp_path, scenario_dict(workload={"arrival": {"kind": "trace", "path": "bad.csv"}}), "b.yaml")
    with pytest.raises(CapsimInputError, match="time_column"):
        load_scenario(bad).workload.arrival.mean_rate_rps(10)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("name: [unclosed\n", "invalid YAML: line"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_cli_bad_files_exit_2_with_one_line(tmp_path: Path, content: str, expected: str) -> None:
    proc = capsim("simulate", str(write(tmp_path, content)))
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_cli_errors_for_missing_file_bad_flag_and_bad_set(tmp_path: Path) -> None:
    good = write(tmp_path, scenario_dict("duration_s=5"))
    for args, expected in [
        (["simulate", str(tmp_path / "missing.yaml")], "file not found"),
        (["simulate", str(good), "--replications", "0"], "--replications"),
        (["simulate", str(good), "--frobnicate"], "No such option"),
        (["simulate", str(good), "--set", "serving.replicas"], "dotted.path=value"),
        (["simulate", str(good), "--set", "serving.timeout_ms=-3"], "serving.timeout_ms"),
        (["check", str(good), "--set", "service.kind=quantum"], "service"),
    ]:
        proc = capsim(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert expected in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_unstable_configuration_warns_and_still_reports(tmp_path: Path) -> None:
    path = write(tmp_path, scenario_dict("duration_s=20", "workload.arrival.rate_rps=150"))  # capacity 100/s
    proc = capsim("simulate", str(path), "--json")
    assert proc.returncode == 0
    summary = json.loads(proc.stdout)
    assert summary["warnings"] and "unstable" in summary["warnings"][0]
    assert "unstable" in proc.stderr
    assert summary["requests"]["completed"] > 0


def test_hardware_from_the_catalogue_and_unknown_names_suggested(tmp_path: Path) -> None:
    priced = load_scenario(write(tmp_path, scenario_dict(hardware={"name": "L4", "gpus_per_replica": 2})))
    assert priced.hardware.usd_per_hour == pytest.approx(2 * 0.8048)
    assert priced.hardware.tdp_w == pytest.approx(2 * 72)
    with pytest.raises(CapsimInputError, match=r"did you mean: H100-SXM") as info:
        load_scenario(write(tmp_path, scenario_dict(hardware={"name": "H10"}), "h.yaml"))
    assert "hardware.name" in str(info.value)
    custom = load_scenario(write(tmp_path, scenario_dict(hardware={"name": "my-box", "usd_per_hour": 1.5}), "c.yaml"))
    assert custom.hardware.usd_per_hour == 1.5 and custom.hardware.tdp_w is None

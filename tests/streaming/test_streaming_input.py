"""Bad streaming and async settings: one line naming the file and the field, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capsim.errors import CapsimInputError
from capsim.scenario import validate_scenario
from tests.scenario_helpers import scenario_dict

STREAMING = {"mode": "streaming", "partitions": 4, "consumers": 2}
ASYNC = {"mode": "async", "workers": 2, "poll_interval_ms": 1000}


@pytest.mark.parametrize(
    ("serving", "override", "field", "words"),
    [
        (STREAMING, "serving.consumers=0", "serving.consumers", "greater than or equal to 1"),
        (STREAMING, "serving.consumers=-3", "serving.consumers", "greater than or equal to 1"),
        (STREAMING, "serving.partitions=0", "serving.partitions", "greater than or equal to 1"),
        (STREAMING, "serving.max_poll_records=0", "serving.max_poll_records", "greater than or equal to 1"),
        (STREAMING, "serving.fetch_max_wait_ms=-1", "serving.fetch_max_wait_ms", "greater than or equal to 0"),
        (STREAMING, "serving.fetch_max_wait_ms=300000", "serving.fetch_max_wait_ms", "less than 300000"),
        (STREAMING, "serving.fetch_min_records=0", "serving.fetch_min_records", "greater than or equal to 1"),
        (STREAMING, "serving.rebalance.pause_s=-1", "serving.rebalance.pause_s", "greater than or equal to 0"),
        (STREAMING, "serving.rebalance.protocol=sticky", "serving.rebalance.protocol", "'eager' or 'cooperative'"),
        (STREAMING, "serving.poll_records=5", "serving.poll_records", "unknown key"),
        (ASYNC, "serving.workers=0", "serving.workers", "greater than or equal to 1"),
        (ASYNC, "serving.poll_interval_ms=0", "serving.poll_interval_ms", "greater than 0"),
        (ASYNC, "serving.max_batch_size=0", "serving.max_batch_size", "greater than or equal to 1"),
        (ASYNC, "serving.batch_wait_ms=-5", "serving.batch_wait_ms", "greater than or equal to 0"),
        (ASYNC, "serving.store_write_ms=-1", "serving.store_write_ms", "greater than or equal to 0"),
    ],
)
def test_bad_values_name_the_field(serving: dict[str, object], override: str, field: str, words: str) -> None:
    data = scenario_dict(override, serving=serving)
    validate_scenario(scenario_dict(serving=serving), "s.yaml")  # the same scenario is fine without it
    with pytest.raises(CapsimInputError) as err:
        validate_scenario(data, "s.yaml")
    assert err.value.field == field
    assert words in err.value.detail
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("serving", "words"),
    [
        ({**STREAMING, "autoscaling": {"kind": "keda_kafka", "min_replicas": 5}}, "exceeds partitions (4)"),
        ({**STREAMING, "consumers": 6, "autoscaling": {"kind": "keda_kafka"}}, "[min_replicas, min(max_replicas"),
        ({**STREAMING, "assignor": "round_robin", "rebalance": {"protocol": "cooperative"}}, "sticky assignor"),
        ({**ASYNC, "workers": 9, "autoscaling": {"kind": "keda", "target": 5, "max_replicas": 4}}, "must lie within"),
    ],
)
def test_inconsistent_settings_are_explained(serving: dict[str, object], words: str) -> None:
    with pytest.raises(CapsimInputError) as err:
        validate_scenario(scenario_dict(serving=serving), "s.yaml")
    assert err.value.field == "serving"
    assert words in err.value.detail


def test_cli_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(scenario_dict(serving={**STREAMING, "consumers": 0})))
    proc = subprocess.run([sys.executable, "-m", "capsim.cli.main", "simulate", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {path}: serving.consumers: Input should be greater than or equal to 1 (got 0)"]
    assert "Traceback" not in proc.stderr

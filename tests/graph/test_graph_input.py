"""Bad graphs: one line naming the file and what is wrong, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from capsim.errors import CapsimInputError
from capsim.scenario import validate_scenario
from tests.graph.helpers import stage
from tests.scenario_helpers import scenario_dict

CHAIN = {"a": stage(10, next={"to": "b"}), "b": stage(10)}


def graph(entry: object, stages: dict) -> dict:
    return scenario_dict(serving={"mode": "graph", "entry": entry, "stages": stages})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (graph("a", {"a": stage(10, next={"to": "b"}), "b": stage(10, next={"to": "a"})}), "cycle through a, b"),
        (graph("a", {"a": stage(10, next={"to": "c"}), "b": stage(10)}), "unknown stage 'c'"),
        (graph("x", CHAIN), "unknown stage 'x'"),
        (graph({"split": {"a": 0.9, "b": 0.2}}, CHAIN), "weights must sum to 1 (they sum to 1.1)"),
        (
            graph({"split": {"a": 0.9, "b": 0.1}, "schedule": [{"at_s": 5.0, "split": {"a": 1.0}}]}, CHAIN),
            "must name the same stages",
        ),
        (
            graph("a", {"a": stage(10, next={"to": "b", "fan_out": ["b", "c"]}), "b": stage(1), "c": stage(1)}),
            "either to",
        ),
        (
            graph("a", {"a": stage(10, next={"fan_out": ["b", "c"], "first": 3}), "b": stage(1), "c": stage(1)}),
            "first (3) must be at most",
        ),
        (graph("a", {"a": stage(10, shadow=["b"], next={"to": "b"}), "b": stage(1)}), "cannot also be routed"),
        (graph("a", {**CHAIN, "c": stage(5)}), "c receive no requests"),
    ],
)
def test_bad_graphs_are_one_line(data: dict, words: str) -> None:
    with pytest.raises(CapsimInputError) as err:
        validate_scenario(data, "g.yaml")
    assert words in str(err.value), str(err.value)
    assert "\n" not in str(err.value)


def test_the_cli_says_it_in_one_line_with_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(graph({"split": {"a": 0.5, "b": 0.6}}, CHAIN)))
    proc = subprocess.run([sys.executable, "-m", "capsim.cli.main", "simulate", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "weights must sum to 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_shows_each_stage_against_its_offered_load() -> None:
    proc = subprocess.run([sys.executable, "-m", "capsim.cli.main", "check", "scenarios/fraud-ensemble-fanout.yaml"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # 800 tps to every stage; gbdt: 4 workers x 1 / 3 ms = 1,333 tps, the stage closest to capacity.
    assert "stage gbdt: offered 800 rps (peak 800), capacity 1333 rps, utilization ≈ 0.600" in proc.stdout
    assert "offered load 800 rps (peak 800), capacity with full batches 1333 rps" in proc.stdout

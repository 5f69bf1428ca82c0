"""Building small scenarios in tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from capsim.scenario import Scenario, apply_overrides, validate_scenario

BASE: dict[str, Any] = {
    "name": "test",
    "duration_s": 100.0,
    "warmup_s": 0.0,
    "seed": 1,
    "workload": {"arrival": {"kind": "poisson", "rate_rps": 10.0}},
    "service": {"kind": "deterministic", "mean_ms": 10.0},
    "hardware": {"name": "cpu", "usd_per_hour": 1.0},
    "serving": {"mode": "realtime", "replicas": 1},
}


def scenario_dict(*overrides: str, **sections: Any) -> dict[str, Any]:
    """BASE with whole sections replaced (keyword) and dotted overrides applied."""
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(sections))
    return apply_overrides(data, list(overrides))


def make_scenario(*overrides: str, **sections: Any) -> Scenario:
    """A validated scenario built like `scenario_dict`."""
    return validate_scenario(scenario_dict(*overrides, **sections), "test")


def trace_arrivals(tmp_path: Path, times_s: list[float]) -> dict[str, Any]:
    """An arrival spec replaying exactly `times_s` (the first must be 0: traces start at 0)."""
    path = tmp_path / "arrivals.csv"
    path.write_text("time_s\n" + "\n".join(repr(t) for t in times_s) + "\n")
    return {"kind": "trace", "path": str(path), "time_unit": "s"}


def rows(result: Any, replication: int = 0) -> dict[str, np.ndarray]:
    """The per-request columns of one replication."""
    return result.replications[replication].requests

"""Building small batch-job scenarios in tests."""

from __future__ import annotations

import copy
from typing import Any

from capsim.scenario import Scenario, apply_overrides, validate_scenario
from capsim.scenario.load import check_batch_scenario

BASE: dict[str, Any] = {
    "name": "job",
    "duration_s": 100_000.0,
    "seed": 1,
    "service": {"kind": "deterministic", "mean_ms": 1000.0},
    "hardware": {"name": "cpu", "usd_per_hour": 3.6},
    "serving": {"mode": "batch", "dataset": {"items": 1000}, "workers": 1, "batch_size": 100},
}


def batch_dict(*overrides: str, service: dict[str, Any] | None = None, **serving: Any) -> dict[str, Any]:
    """BASE with the service and `serving` keys replaced and dotted overrides applied."""
    data = copy.deepcopy(BASE)
    if service is not None:
        data["service"] = copy.deepcopy(service)
    data["serving"].update(copy.deepcopy(serving))
    return apply_overrides(data, list(overrides))


def batch_scenario(*overrides: str, service: dict[str, Any] | None = None, **serving: Any) -> Scenario:
    """A validated batch scenario built like `batch_dict` (with the load-time checks)."""
    scenario = validate_scenario(batch_dict(*overrides, service=service, **serving), "test")
    check_batch_scenario(scenario)
    return scenario

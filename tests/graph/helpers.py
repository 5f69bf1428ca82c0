"""Small graph scenarios for the graph tests."""

from __future__ import annotations

from typing import Any

from capsim.scenario import Scenario
from tests.scenario_helpers import make_scenario


def stage(mean_ms: float, kind: str = "deterministic", **extra: Any) -> dict[str, Any]:
    """A one-replica stage whose batches take `mean_ms` (deterministic unless `kind` says)."""
    return {"serving": {"replicas": 1, **extra.pop("serving", {})}, "service": {"kind": kind, "mean_ms": mean_ms},
            **extra}  # fmt: skip


def graph_scenario(entry: Any, stages: dict[str, Any], *overrides: str, **sections: Any) -> Scenario:
    """A validated graph scenario (the test BASE's workload, hardware and 100 s run unless overridden)."""
    return make_scenario(*overrides, serving={"mode": "graph", "entry": entry, "stages": stages}, **sections)

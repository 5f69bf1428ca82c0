"""Small real-time scenarios and a planner runner for the plan tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from capsim.plan.cache import ResultCache
from capsim.plan.rules import SafetyRules
from capsim.plan.run import PlanRequest, PlanRun, run_plan
from capsim.sweep import parse_axis

# 2,000 req/s of a small vision model (4 ms + 0.5 ms per item, batches up to 16) on replicas of
# 1 USD/h: one replica's full-batch capacity is 16 / 12 ms = 1,333 req/s, so the headroom rule
# (peak <= 80% of capacity) asks for at least 2 replicas, and a p99 of 15 ms needs more than that.
SCENARIO: dict[str, Any] = {
    "name": "plan-test",
    "duration_s": 30,
    "warmup_s": 3,
    "seed": 7,
    "workload": {"arrival": {"kind": "poisson", "rate_rps": 2000}},
    "service": {"kind": "linear", "base_ms": 4.0, "per_item_ms": 0.5, "cv": 0.1},
    "hardware": {"name": "gpu-x", "usd_per_hour": 1.0},
    "serving": {"mode": "realtime", "replicas": 2, "batching": {"max_batch_size": 16, "max_wait_ms": 2},
                "load_balancer": "least_outstanding"},
    "slo": {"latency_ms": 15, "percentile": 99},
}  # fmt: skip


def write_scenario(tmp_path: Path, data: dict[str, Any] | None = None, **top: Any) -> Path:
    """SCENARIO (or `data`) with top-level keys replaced, as a YAML file under `tmp_path`."""
    scenario = copy.deepcopy(data if data is not None else SCENARIO)
    scenario.update(copy.deepcopy(top))
    path = tmp_path / f"{scenario['name']}.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def plan(path: Path, *overrides: str, vary: tuple[str, ...] = (), windows: tuple[float, ...] = (),
         rules: SafetyRules | None = None, max_replicas: int = 10, exhaustive: bool = False) -> PlanRun:  # fmt: skip
    """`run_plan` on a scenario file with an in-memory cache."""
    request = PlanRequest(scenario_path=path, overrides=list(overrides), axes=[parse_axis(v) for v in vary],
                          max_wait_ms=list(windows), max_replicas=max_replicas, rules=rules or SafetyRules(),
                          exhaustive=exhaustive)  # fmt: skip
    return run_plan(request, ResultCache())


def pick_config(run: PlanRun, level: int = 0) -> tuple[Any, ...] | None:
    """(hardware, replicas or max_replicas, window, varied values) of a level's pick."""
    pick = run.document["levels"][level]["pick"]
    if pick is None:
        return None
    count = pick["replicas"] if pick["fleet"] == "fixed" else pick["max_replicas"]
    return pick["hardware"], count, pick["max_wait_ms"], tuple(sorted(pick["vary"].items()))

"""How far simulation is from measurement over a set of load points, against the accuracy targets.

Each point is replayed with the calibrated model and compared (compare.py); the errors are then
aggregated: mean and worst absolute relative error of throughput, p50 and p99 latency, over all
points and over those at ≤ 80% utilization — the regime the targets are set for (issue 7: p50
within 5%, p99 within 10%, throughput within 3%). Near saturation small service-time errors grow
without bound in queueing delay, so errors there are reported but judged apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from capsim.calibration.compare import compare_point
from capsim.calibration.replay import ReplayWorkspace, replay
from capsim.calibration.runfolder import LoadPoint

TARGETS = {"throughput_rps": 0.03, "latency_ms.p50": 0.05, "latency_ms.p99": 0.10}
UTILIZATION_LIMIT = 0.80


@dataclass(frozen=True)
class ReplayModel:
    """What a replay needs besides the point: the service model (a `service:` mapping), overhead and
    front end (a `serving.frontend` mapping, or None for none)."""

    service: dict[str, Any]
    overhead_ms: float
    frontend: dict[str, Any] | None = None


def point_utilization(comparison: dict[str, Any]) -> float | None:
    """The point's utilization: measured (from the batch log) when known, else the simulated one."""
    measured = comparison["measured"].get("utilization")
    return measured if measured is not None else comparison["simulated"].get("utilization")


def evaluate_points(
    points: list[LoadPoint], model: ReplayModel, workspace: ReplayWorkspace, *, seed: int = 0, replications: int = 3,
) -> list[dict[str, Any]]:
    """Replay and compare each point; one row per point with its label, load and comparison."""
    rows = []
    for point in points:
        sim = replay(point, model.service, model.overhead_ms, workspace, seed=seed, replications=replications,
                     frontend=model.frontend)
        comparison = compare_point(point, sim)
        rows.append({
            "label": point.label, "run_dir": str(point.run_dir), "step": point.step, "rate_rps": point.rate_rps,
            "server": point.server.key() if point.server else None, "valid": point.valid,
            "utilization": point_utilization(comparison), **comparison,
        })  # fmt: skip
    return rows


def _aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"points": len(rows)}
    for key in TARGETS:
        errors = [abs(r["relative_error"][key]) for r in rows if r["relative_error"].get(key) is not None]
        out[key] = {"mean_abs": float(np.mean(errors)) if errors else None,
                    "max_abs": float(np.max(errors)) if errors else None}  # fmt: skip
    return out


def aggregate_errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean / worst absolute relative errors over all rows and over rows at ≤ 80% utilization, and
    whether the latter meet the targets (None when no row qualifies)."""
    light = [r for r in rows if r["utilization"] is not None and r["utilization"] <= UTILIZATION_LIMIT]
    light_agg = _aggregate(light)
    met: dict[str, bool | None] = {}
    for key, limit in TARGETS.items():
        worst = light_agg[key]["max_abs"]
        met[key] = None if worst is None else bool(worst <= limit)
    return {"all": _aggregate(rows), "utilization_le_80": light_agg, "targets": TARGETS, "targets_met": met}


def error_line(agg: dict[str, Any]) -> str:
    """One line of the worst errors at ≤ 80% utilization (or over all points when none qualifies)."""
    scope, part = ("≤80% util.", agg["utilization_le_80"]) if agg["utilization_le_80"]["points"] else \
        ("all points", agg["all"])
    bits = []
    for key, name in (("latency_ms.p50", "p50"), ("latency_ms.p99", "p99"), ("throughput_rps", "throughput")):
        worst = part[key]["max_abs"]
        bits.append(f"{name} {100 * worst:.1f}%" if worst is not None else f"{name} –")
    return f"worst |error| ({scope}, {part['points']} point(s)): " + ", ".join(bits)

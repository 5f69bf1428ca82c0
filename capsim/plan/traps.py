"""Traps a plan can see in its own space, said before anyone trusts its answer (stored in plan.json).

* `utilization_scaling_with_batching`: an HPA scaling on utilization (busy time) in front of
  dynamic batching. A batching replica is busy most of the time at any load (a batch starts as soon
  as the executor is free), so a busy-time target keeps adding replicas that only make batches
  smaller: requests/s or queue length track the load instead.
* `ineffective_axis`: a varied field whose values leave every variant the same
  (`capsim.sweep.ineffective_axes`).
* `extrapolated_service`: service times not measured where they are used: a profile transferred by
  roofline to other hardware, or a profile asked for batches larger than it measured (the times
  are extended along the line through its two largest sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from capsim.plan.space import Candidate
from capsim.scenario import Scenario
from capsim.stability import extrapolation_warnings
from capsim.sweep import Axis, ineffective_axes


def autoscaler_metrics(scenario: Scenario) -> list[str]:
    """The metrics the scenario's autoscaler scales on ([] without one)."""
    scaler = getattr(scenario.serving, "autoscaling", None)
    if scaler is None:
        return []
    listed = getattr(scaler, "metrics", None)
    if listed:
        return [m.metric for m in listed]
    metric = getattr(scaler, "metric", None)
    return [metric] if metric is not None else []


def scaling_trap(scenario: Scenario) -> dict[str, str] | None:
    """The utilization-with-batching trap, when the scenario has it."""
    batching = getattr(scenario.serving, "batching", None)
    scaler = getattr(scenario.serving, "autoscaling", None)
    if scaler is None or batching is None or batching.max_batch_size <= 1:
        return None
    if "utilization" not in autoscaler_metrics(scenario):
        return None
    return {"kind": "utilization_scaling_with_batching",
            "message": (f"serving.autoscaling: {scaler.kind} scales on utilization in front of dynamic batching "
                        f"(max_batch_size {batching.max_batch_size}): a batching replica looks busy at any load, "
                        "so the fleet grows without serving more; scale on rps or queue_length "
                        "(try --vary serving.autoscaling.metric=utilization,rps with a matching target)")}  # fmt: skip


def measured_batch_sizes(scenario: Scenario) -> list[int] | None:
    """The batch sizes a profile-based service measured (None for a parametric service)."""
    profile = getattr(scenario.service, "profile", None)
    points = getattr(profile, "points", None)
    return sorted(p.batch_size for p in points) if points else None


def service_traps(scenario: Scenario, label: str) -> list[dict[str, str]]:
    """Extrapolated service times on one candidate's scenario."""
    traps = []
    described: dict[str, Any] = scenario.service.describe()
    if described.get("extrapolated"):
        provenance = described.get("provenance") or {}
        traps.append({"kind": "extrapolated_service",
                      "message": (f"{label}: service times are a roofline transfer of a profile measured on "
                                  f"{provenance.get('source_hardware', 'other hardware')}, not a measurement "
                                  "on this hardware; measure it (capsim profile) before committing")})  # fmt: skip
    for warning in extrapolation_warnings(scenario):
        traps.append({"kind": "extrapolated_service", "message": f"{label}: {warning}"})
    sizes = measured_batch_sizes(scenario)
    batching = getattr(scenario.serving, "batching", None)
    if sizes and batching is not None and batching.max_batch_size > sizes[-1]:
        traps.append({"kind": "extrapolated_service",
                      "message": (f"{label}: max_batch_size {batching.max_batch_size} is beyond the largest "
                                  f"measured batch ({sizes[-1]}); larger batches' times are extended")})  # fmt: skip
    return traps


def find_traps(base: Scenario, axes: Sequence[Axis], variant_scenarios: Sequence[Scenario],
               candidates: Sequence[Candidate]) -> list[dict[str, str]]:  # fmt: skip
    """Every trap of a plan, each once: the scaling trap (on any candidate), ineffective axes (over
    the base scenario's variants `variant_scenarios`, in grid order), extrapolated service times."""
    from capsim.sweep import grid

    traps: list[dict[str, str]] = []
    for candidate in candidates:
        trap = scaling_trap(candidate.at(candidate.floor))
        if trap is not None:
            traps.append(trap)
            break
    if axes:
        for message in ineffective_axes(axes, grid(axes), variant_scenarios):
            traps.append({"kind": "ineffective_axis", "message": message})
    for candidate in candidates:
        traps.extend(service_traps(candidate.at(candidate.floor), candidate.hardware))
    unique: dict[str, dict[str, str]] = {}
    for trap in traps:
        unique.setdefault(trap["message"], trap)
    return list(unique.values())

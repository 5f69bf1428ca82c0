"""The space a plan searches: candidate hardware × the `--vary` values (batching windows included) ×
traffic levels, each a line along which the replica count (or an autoscaler's `max_replicas`) is searched.

A `Candidate` is one such line: the base scenario moved to one hardware (`on_candidate_hardware`:
its price, its service time or the profile transferred by roofline), with one value of every
non-load axis, at one traffic level. `Candidate.at(count)` is the validated scenario of one
configuration on that line. What the search needs before simulating comes from `capsim.stability`:
the capacity of one replica with full batches, hence the smallest count the headroom rule allows
and a lower bound on the cost of anything on the line.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from capsim.errors import CapsimInputError
from capsim.hardware.sharing import replicas_per_gpu
from capsim.plan.rules import SafetyRules
from capsim.scenario import RealtimeServing, Scenario
from capsim.scenario.catalogue import scenario_catalogue, transfer_service
from capsim.scenario.load import apply_overrides, on_candidate_hardware, validate_scenario
from capsim.serving.batchjob.schema import HardwareCandidate
from capsim.stability import estimate_capacity, largest_fleet
from capsim.sweep import LOAD_PREFIX, Axis, override_text

Fleet = Literal["fixed", "autoscaled"]
WINDOW_PATH = "serving.batching.max_wait_ms"


def window_ms(scenario: Scenario) -> float | None:
    """The batching window of a real-time scenario (None for an LLM engine: it batches per step)."""
    if not isinstance(scenario.serving, RealtimeServing):
        return None
    return scenario.serving.batching.max_wait_ms


def fleet_kind(scenario: Scenario) -> Fleet:
    """`autoscaled` when the real-time fleet has an autoscaler (its `max_replicas` is searched)."""
    return "autoscaled" if getattr(scenario.serving, "autoscaling", None) is not None else "fixed"


@dataclass
class Candidate:
    """One line of the search: a hardware, the values of the varied fields, a traffic level."""

    index: int
    level: int
    hardware: str
    vary: dict[str, Any]
    load: dict[str, Any]
    data: dict[str, Any]
    fleet: Fleet
    floor: int
    high: int
    catalogue: Path | None = None
    _built: dict[int, Scenario] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`L4, serving.batching.max_wait_ms=2`: the hardware and the varied values (and an autoscaled
        line's `min_replicas`)."""
        floor = [f"min_replicas={self.floor}"] if self.fleet == "autoscaled" else []
        return ", ".join([self.hardware, *(f"{p}={v}" for p, v in self.vary.items()), *floor])

    def at(self, count: int) -> Scenario:
        """The validated scenario of this line at `count` replicas (or `max_replicas`)."""
        if count not in self._built:
            probe = apply_overrides(self.data, count_overrides(self.fleet, count, self.floor))
            try:
                scenario = validate_scenario(probe, f"plan candidate {self.label}", self.catalogue)
                self._built[count] = transfer_service(scenario, self.catalogue)
            except CapsimInputError as exc:
                raise CapsimInputError(f"{exc.detail} (in the candidate {self.label}, count {count})",
                                       source=exc.source, field=exc.field) from None  # fmt: skip
        return self._built[count]

    def capacity_per_replica_rps(self) -> float:
        """Capacity of one replica with full batches (`capsim.stability`; cache hits excluded)."""
        scenario = largest_fleet(self.at(self.floor))
        replicas = max(1, getattr(scenario.serving, "replicas", 1))
        return estimate_capacity(scenario).capacity_rps / replicas

    def offered_rps(self) -> tuple[float, float]:
        """(mean, peak) offered load after cache hits."""
        estimate = estimate_capacity(self.at(self.floor))
        return estimate.offered_rps, estimate.peak_offered_rps

    def headroom_count(self, rules: SafetyRules) -> int:
        """The fewest replicas whose capacity keeps the peak load within `max_utilization`."""
        per_replica = self.capacity_per_replica_rps()
        if not math.isfinite(per_replica):  # batches that take no time: any fleet carries the load
            return 1
        _, peak = self.offered_rps()
        return max(1, math.ceil(peak / (per_replica * rules.max_utilization) - 1e-9))

    def usd_per_hour_per_replica(self) -> float:
        """The price of one replica per hour (filled from the catalogue at validation); on a shared
        GPU (MIG, time-slicing, MPS) the GPU's price over the replicas it holds, so n replicas cost
        at least n × this (the bill is ceil(n / per GPU) GPUs: bounds from it stay lower bounds)."""
        hardware = self.at(self.floor).hardware
        price = hardware.usd_per_hour
        assert price is not None
        per_gpu = replicas_per_gpu(hardware)
        return price / per_gpu if per_gpu else price

    def cost_lower_bound(self, low: int, rules: SafetyRules) -> float:
        """No configuration from `low` up costs less per hour than this: a fixed fleet pays `low`
        replicas (one more with N+1); an autoscaled one at least its floor, and at least the
        replicas that carry the mean load with full batches."""
        price = self.usd_per_hour_per_replica()
        extra = 1 if rules.n_plus_one else 0
        if self.fleet == "fixed":
            return (low + extra) * price
        mean, _ = self.offered_rps()
        per_replica = self.capacity_per_replica_rps()
        carried = mean / per_replica if per_replica > 0 and math.isfinite(per_replica) else 0.0
        return max(self.floor + extra, carried) * price


def count_overrides(fleet: Fleet, count: int, floor: int) -> list[str]:
    """`--set` texts putting a fleet at `count`: a fixed fleet's replicas, or an autoscaler's
    `max_replicas` with `min_replicas` (and the initial count) at `floor`."""
    if fleet == "fixed":
        return [override_text("serving.replicas", count)]
    return [override_text("serving.autoscaling.min_replicas", floor),
            override_text("serving.autoscaling.max_replicas", count),
            override_text("serving.replicas", floor)]  # fmt: skip


def hardware_candidates(scenario: Scenario, names: Sequence[str] | None) -> list[tuple[HardwareCandidate | None, str]]:
    """The hardware to plan on, as (candidate, label): `names` (`--hardware`; an entry of `plan.hardware`
    with the same name supplies its service and price), else `plan.hardware`, else the scenario's own
    (candidate None). A name the catalogue does not know is refused naming `--hardware`."""
    listed = list(scenario.plan.hardware) if scenario.plan is not None else []
    if not names:
        return [(c, c.name) for c in listed] or [(None, scenario.hardware.name)]
    catalogue = scenario_catalogue(scenario.hardware)
    by_name = {c.name.lower(): c for c in listed}
    chosen: list[tuple[HardwareCandidate | None, str]] = []
    for name in names:
        if name.lower() in by_name:
            chosen.append((by_name[name.lower()], name))
            continue
        try:
            canonical = catalogue.canonical_name(name, field="--hardware")
        except CapsimInputError as exc:
            raise CapsimInputError(exc.detail, source="--hardware") from None
        if _canonical_or_none(catalogue, scenario.hardware.name) == canonical:  # the scenario's own hardware
            chosen.append((None, scenario.hardware.name))
        else:
            chosen.append((HardwareCandidate(name=canonical), canonical))
    return chosen


def _canonical_or_none(catalogue: Any, name: str) -> str | None:
    try:
        return str(catalogue.canonical_name(name))
    except CapsimInputError:
        return None


def build_candidates(
    scenario: Scenario,
    hardware: Sequence[tuple[HardwareCandidate | None, str]],
    axes: Sequence[Axis],
    rules: SafetyRules,
    max_count: int,
    catalogue: Path | None = None,
) -> tuple[list[dict[str, Any]], list[Candidate]]:
    """The traffic levels (each {load path: value}) and every candidate line, levels outermost."""
    load_axes = [a for a in axes if a.path.startswith(LOAD_PREFIX)]
    other_axes = [a for a in axes if not a.path.startswith(LOAD_PREFIX)]
    levels = [dict(zip([a.path for a in load_axes], combo, strict=True))
              for combo in itertools.product(*(a.values for a in load_axes))]  # fmt: skip
    fleet = fleet_kind(scenario)
    scaler = getattr(scenario.serving, "autoscaling", None)
    floor = max(rules.min_replicas, scaler.min_replicas if scaler is not None else 1)
    moved: list[tuple[str, dict[str, Any]]] = []
    for i, (candidate, label) in enumerate(hardware):
        if candidate is None:
            data = scenario.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            data = on_candidate_hardware(scenario, candidate, f"plan.hardware[{i}] ({label})")
        data.pop("plan", None)  # the space is not part of a variant (nor of its cache key)
        if isinstance(data.get("slo"), dict):  # an unset end-to-end bound is dumped as null (LLM SLOs)
            data["slo"] = {k: v for k, v in data["slo"].items() if v is not None}
        moved.append((label, data))
    candidates: list[Candidate] = []
    for level_index, level in enumerate(levels):
        for combo in itertools.product(*(a.values for a in other_axes)):
            vary = dict(zip([a.path for a in other_axes], combo, strict=True))
            texts = [override_text(p, v) for p, v in {**level, **vary}.items()]
            for label, data in moved:
                line = Candidate(
                    index=len(candidates), level=level_index, hardware=label, vary={**vary, **level}, load=level,
                    data=apply_overrides(data, texts), fleet=fleet, floor=rules.min_replicas if scaler else floor,
                    high=max_count, catalogue=catalogue,
                )  # fmt: skip
                floors = min_replicas_tried(line, floor, rules) if scaler is not None else [floor]
                for value in floors:
                    candidates.append(replace(line, index=len(candidates), floor=value, _built={}))
    return levels, candidates


def min_replicas_tried(line: Candidate, scenario_floor: int, rules: SafetyRules) -> list[int]:
    """The autoscaler floors (`min_replicas`) an autoscaled line is searched at, each its own line:

    * the redundancy floor (`--min-replicas`, 2): the cheapest at night, every burst met by cold starts;
    * the scenario's own `min_replicas` when it is higher (what its author chose);
    * the warm floor: the fewest replicas that carry the mean offered load within `max_utilization`
      with full batches, so that only the load above the mean waits for cold starts.

    Distinct values up to the line's bound, ascending. A higher floor costs more at the trough but can
    meet the SLO with a lower `max_replicas`, or at all when cold starts are slower than the rise."""
    per_replica = line.capacity_per_replica_rps()
    mean, _ = line.offered_rps()
    warm = (math.ceil(mean / (per_replica * rules.max_utilization) - 1e-9)
            if per_replica > 0 and math.isfinite(per_replica) else rules.min_replicas)  # fmt: skip
    values = {rules.min_replicas, scenario_floor, max(rules.min_replicas, warm)}
    return sorted(v for v in values if v <= line.high)

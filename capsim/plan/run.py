"""`run_plan`: the whole of `capsim plan` short of printing and writing: load the scenario, build the
space, search it, and assemble plan.json's document (docs/plan.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from capsim.errors import CapsimInputError
from capsim.plan.cache import ResultCache
from capsim.plan.rules import SafetyRules, slo_targets
from capsim.plan.search import Planner, SearchOutcome
from capsim.plan.space import WINDOW_PATH, Candidate, build_candidates, hardware_candidates, window_ms
from capsim.scenario import Scenario, load_scenario
from capsim.scenario.plan_section import DEFAULT_MAX_REPLICAS
from capsim.sweep import Axis

PLAN_FORMAT = "capsim-plan/1"


@dataclass
class PlanRequest:
    """What `capsim plan` was asked: the scenario, the space's flags, the rules, how to run."""

    scenario_path: Path
    overrides: Sequence[str] = ()
    hardware: Sequence[str] = ()
    axes: Sequence[Axis] = ()
    max_wait_ms: Sequence[float] = ()
    max_replicas: int | None = None
    rules: SafetyRules = field(default_factory=SafetyRules)
    seed: int | None = None
    jobs: int = 1
    cluster: str | None = None
    catalogue: Path | None = None
    command: str = ""
    exhaustive: bool = False
    force: bool = False


@dataclass
class PlanRun:
    """A finished plan: its document (plan.json), the scenario, and the search behind it."""

    document: dict[str, Any]
    scenario: Scenario
    outcome: SearchOutcome | None = None
    pick_scenarios: list[Scenario | None] = field(default_factory=list)


def _axes(request: PlanRequest, scenario: Scenario) -> list[Axis]:
    axes = list(request.axes)
    windows = list(request.max_wait_ms) or (list(scenario.plan.max_wait_ms) if scenario.plan is not None else [])
    if scenario.serving.mode == "llm":
        windows = []
    if windows:
        if any(axis.path == WINDOW_PATH for axis in axes):
            raise CapsimInputError(f"the batching window is given twice (--max-wait-ms and --vary {WINDOW_PATH})",
                                   source="--max-wait-ms")  # fmt: skip
        axes.append(Axis(WINDOW_PATH, tuple(float(w) for w in windows)))
    return axes


def load_plan_scenario(request: PlanRequest) -> Scenario:
    """The scenario as planned, with its SLO checked (a plan without one has nothing to meet)."""
    scenario = load_scenario(request.scenario_path, list(request.overrides), request.catalogue)
    if scenario.serving.mode == "batch":
        return scenario
    if scenario.slo is None:
        raise CapsimInputError("capsim plan needs an SLO to meet: add slo: {latency_ms: ..., percentile: ...}",
                               source=str(request.scenario_path), field="slo")  # fmt: skip
    if scenario.serving.mode not in ("realtime", "llm"):
        raise CapsimInputError(f"capsim plan answers real-time serving, LLM engines and batch jobs; this scenario's "
                               f"mode is {scenario.serving.mode}", source=str(request.scenario_path),
                               field="serving.mode")  # fmt: skip
    if scenario.serving.mode == "llm" and (request.max_wait_ms or any(a.path == WINDOW_PATH for a in request.axes)):
        raise CapsimInputError("an LLM engine has no batching window (it batches every step): drop it",
                               source="--max-wait-ms")  # fmt: skip
    return scenario


def provenance(candidates: Sequence[Candidate]) -> dict[str, Any]:
    """Where each hardware's price and service time come from."""
    from capsim.hardware.cost import price_record
    from capsim.plan.traps import measured_batch_sizes
    from capsim.scenario.catalogue import scenario_catalogue

    hardware, service, seen = [], [], set()
    for candidate in candidates:
        if candidate.hardware in seen:
            continue
        seen.add(candidate.hardware)
        scenario = candidate.at(candidate.floor)
        charged = scenario.hardware.usd_per_hour
        try:
            spec = scenario_catalogue(scenario.hardware).get(scenario.hardware.name)
            record = price_record(spec, scenario.hardware.gpus_per_replica)
        except CapsimInputError:
            record = {"hardware": scenario.hardware.name, "source": "the scenario file", "date": None,
                      "confidence": None}  # fmt: skip
        from_catalogue = record.get("usd_per_hour") == charged
        hardware.append({"name": candidate.hardware, "usd_per_hour": charged,
                         "source": record["source"] if from_catalogue else "the scenario file",
                         "date": record["date"] if from_catalogue else None,
                         "confidence": record["confidence"] if from_catalogue else None})  # fmt: skip
        described = scenario.service.describe()
        service.append({"hardware": candidate.hardware, "kind": described.get("kind"),
                        "measured": described.get("kind") == "profile",
                        "extrapolated": bool(described.get("extrapolated", False)),
                        "source": described.get("path") or described.get("source"),
                        "measured_batch_sizes": measured_batch_sizes(scenario)})  # fmt: skip
    return {"hardware": hardware, "service": service}


def run_plan(request: PlanRequest, cache: ResultCache, on_simulation: Callable[[], None] | None = None) -> PlanRun:
    """Plan a real-time or LLM scenario (a batch job goes to `capsim.plan.batch.run_batch_plan`)."""
    from capsim import __version__
    from capsim.plan.result import level_results
    from capsim.plan.traps import find_traps
    from capsim.sweep import grid, load_variants

    scenario = load_plan_scenario(request)
    if scenario.serving.mode == "batch":
        from capsim.plan.batch import run_batch_plan

        return run_batch_plan(request, scenario, on_simulation)
    assert scenario.slo is not None
    axes = _axes(request, scenario)
    spec_bound = scenario.plan.max_replicas if scenario.plan is not None else DEFAULT_MAX_REPLICAS
    max_count = request.max_replicas or spec_bound
    hardware = hardware_candidates(scenario, request.hardware)
    levels, candidates = build_candidates(scenario, hardware, axes, request.rules, max_count, request.catalogue)
    variants = load_variants(request.scenario_path, request.overrides, grid(axes), request.catalogue) if axes else []
    traps = find_traps(scenario, axes, variants, candidates)
    seed = scenario.seed if request.seed is None else request.seed
    planner = Planner(candidates, slo_targets(scenario.slo), request.rules, seed, cache, jobs=request.jobs,
                      cluster=request.cluster, exhaustive=request.exhaustive, on_simulation=on_simulation)  # fmt: skip
    if candidates and all(line.infeasible for line in planner.lines):
        needed = min(line.search.low for line in planner.lines)
        raise CapsimInputError(f"no configuration to search: keeping the peak load within "
                               f"{request.rules.max_utilization:.0%} of capacity takes at least {needed} replicas, "
                               f"above the bound {max_count}; raise --max-replicas (or plan.max_replicas)",
                               source="--max-replicas")  # fmt: skip
    check_plan_budget(planner, request)
    outcome = planner.run()
    level_docs = level_results(planner, levels)
    floor = min((c.floor for c in candidates), default=request.rules.min_replicas)
    fleet = candidates[0].fleet if candidates else "fixed"
    document = {
        "format": PLAN_FORMAT,
        "kind": scenario.serving.mode,  # realtime or llm
        "scenario": {"name": scenario.name, "path": str(request.scenario_path)},
        "command": request.command,
        "seed": seed,
        "capsim_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "slo": slo_targets(scenario.slo),
        "rules": request.rules.as_dict(),
        "space": {
            "hardware": [label for _, label in hardware],
            "fleet": fleet,
            "searched": "replicas" if fleet == "fixed" else "max_replicas",
            "replicas": {"low": floor, "high": max_count},
            "max_wait_ms": sorted({w for c in candidates if (w := window_ms(c.at(c.floor))) is not None}),
            "vary": [{"path": a.path, "values": list(a.values)} for a in axes],
            "min_replicas": sorted({c.floor for c in candidates}) if fleet == "autoscaled" else [],
            "size": sum(max(0, max_count - c.floor + 1) for c in candidates),
        },
        "levels": level_docs,
        "traps": traps,
        "requests_simulated": outcome.requests_simulated,
        "simulations": outcome.simulations,
        "cached_simulations": outcome.cached_simulations,
        "provenance": provenance(candidates),
        "pick_folders": [None] * len(levels),
    }
    pick_scenarios = [_pick_scenario(planner, level) for level in level_docs]
    return PlanRun(document, scenario, outcome, pick_scenarios)


def worst_case_probes(low: int, high: int) -> int:
    """The most counts `CountSearch` simulates on a line of [low, high]: the floor, a gallop of
    doublings to the top (log2(high / low) + 1) and a bisection of the last doubling's gap
    (log2 of it), plus one for N+1."""
    span = max(high, low) / max(low, 1)
    return 2 + math.ceil(math.log2(span)) + math.ceil(math.log2(max(high - low + 1, 1)))


def check_plan_budget(planner: Planner, request: PlanRequest) -> None:
    """Refuse a plan whose worst case exceeds the run budget (`capsim.budget`, as `simulate` and
    `sweep` do; `--force` runs it anyway): every open line probed `worst_case_probes` times at its
    largest fleet, each probe with `max_replications`, on `--jobs` processes. The search usually runs
    a fraction of that (pruning, early meets), so a plan refused here is one whose worst case no one
    would wait for, not merely a large one."""
    from capsim.budget import enforce, estimate_sweep

    lines = [line for line in planner.lines if not line.infeasible]
    if not lines or request.force:
        return
    scenarios, labels = [], []
    probes = max(worst_case_probes(line.search.low, line.search.high) for line in lines)
    for line in lines:
        scenarios.append(line.candidate.at(line.search.high))
        labels.append(f"{line.candidate.label} x {line.search.high}")
    replications = request.rules.max_replications * probes
    estimate = estimate_sweep(scenarios, labels, replications, "auto", max(1, request.jobs))
    enforce(estimate, False, f"this plan's worst case ({len(lines)} lines x {probes} counts x "
            f"{request.rules.max_replications} replications)", str(request.scenario_path))


def _pick_scenario(planner: Planner, level: dict[str, Any]) -> Scenario | None:
    pick = level["pick"]
    if pick is None:
        return None
    for line in planner.lines:
        for probe in line.probes.values():
            if probe.key == pick["key"]:
                return probe.scenario
    return None

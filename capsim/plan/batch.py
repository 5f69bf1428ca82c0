"""`capsim plan` on a batch job: the fewest workers meeting `serving.deadline_s` on the scenario's
hardware and on each `serving.search.hardware` candidate (`capsim.plan.batchjob_search`, the search
`capsim simulate --solve` runs), written in plan.json's shape (docs/plan.md): `searched` is
`workers`, each row's `replicas` its worker count, the SLO `{"deadline_s": ...}`. A worker count
meets the deadline when every replication finishes by it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from capsim.errors import CapsimInputError

if TYPE_CHECKING:
    from capsim.plan.run import PlanRequest, PlanRun
    from capsim.scenario import Scenario


def _rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per simulated worker count of one hardware (a job's bill is `usd`, per run)."""
    rows = []
    for probe in answer["probes"]:
        meets = bool(probe["met"])
        is_answer = answer["workers"] == probe["workers"]
        rows.append({
            "key": None, "hardware": answer["hardware"], "fleet": "fixed", "replicas": probe["workers"],
            "min_replicas": None, "max_replicas": None, "autoscaler": None, "vary": {},
            "usd": probe["usd"], "makespan_s": probe["makespan_s"],
            "cost_usd_per_h": None, "cost_usd_per_month": None,
            "status": "meets" if meets and is_answer else "fails",
            "reason": ("meets the deadline with the fewest workers" if meets and is_answer else
                       "meets the deadline, but fewer workers do too" if meets else "misses the deadline"),
        })  # fmt: skip
    return rows


def run_batch_plan(
    request: PlanRequest, scenario: Scenario, on_simulation: Callable[[], None] | None = None
) -> PlanRun:
    """The batch job's search as a plan; `on_simulation` after each simulated worker count."""
    from capsim import __version__
    from capsim.plan.batchjob_search import cheapest_hardware, fewest_workers
    from capsim.plan.run import PLAN_FORMAT, PlanRun

    serving = scenario.serving
    deadline_s = getattr(serving, "deadline_s", None)
    if deadline_s is None:
        raise CapsimInputError("capsim plan needs a deadline to meet: set serving.deadline_s",
                               source=str(request.scenario_path), field="serving.deadline_s")  # fmt: skip
    if request.hardware or request.axes or request.max_wait_ms:
        raise CapsimInputError("a batch job's candidates are serving.search.hardware and its bounds "
                               "serving.search.min_workers/max_workers", source="--hardware/--vary")  # fmt: skip
    seed = scenario.seed if request.seed is None else request.seed
    replications = request.rules.initial_replications
    search = getattr(serving, "search", None)
    low, high = (search.min_workers, search.max_workers) if search is not None else (1, 256)
    if search is not None and search.hardware:
        answers = cheapest_hardware(scenario, seed, replications, on_probe=on_simulation)
    else:
        answers = [fewest_workers(scenario, seed, replications, on_probe=on_simulation)]
    rows = [row for answer in answers for row in _rows(answer.as_dict())]
    meeting = [r for r in rows if r["status"] == "meets"]
    pick = min(meeting, key=lambda r: r["usd"], default=None)
    closest = [] if pick is not None else sorted(rows, key=lambda r: r["makespan_s"] or float("inf"))[:3]
    simulations = sum(len(a.probes) for a in answers) * replications
    document = {
        "format": PLAN_FORMAT, "kind": "batch",
        "scenario": {"name": scenario.name, "path": str(request.scenario_path)},
        "command": request.command, "seed": seed, "capsim_version": __version__,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "slo": {"deadline_s": deadline_s},
        "rules": {**request.rules.as_dict(), "max_utilization": None},
        "space": {"hardware": [a.hardware for a in answers], "fleet": "fixed", "searched": "workers",
                  "replicas": {"low": low, "high": high},
                  "max_wait_ms": [], "vary": [], "size": None},
        "levels": [{"load": {}, "offered_rps": None, "peak_offered_rps": None, "pick": pick, "closest": closest,
                    "candidates": rows}],
        "traps": [], "requests_simulated": 0, "simulations": simulations, "cached_simulations": 0,
        "provenance": {"hardware": [], "service": []}, "pick_folders": [None],
    }  # fmt: skip
    return PlanRun(document, scenario, None, [None])

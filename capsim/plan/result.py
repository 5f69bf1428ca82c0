"""A finished search as plan.json's rows and levels (docs/plan.md): each configuration's status
under the safety rules, the pick of each traffic level, the closest candidates when none meets."""

from __future__ import annotations

from typing import Any

from capsim.hardware.cost import monthly_usd
from capsim.plan.day import binding_hour
from capsim.plan.rules import SafetyRules, llm_headroom
from capsim.plan.search import Line, Planner, Probe, cost_per_hour
from capsim.plan.space import Candidate, window_ms
from capsim.sweep import tail_key

CLOSEST = 3
"""Candidates listed when no configuration meets the SLO at a traffic level."""


def _autoscaler(candidate: Candidate, probe_scenario: Any) -> dict[str, Any] | None:
    from capsim.plan.traps import autoscaler_metrics

    scaler = getattr(probe_scenario.serving, "autoscaling", None)
    if scaler is None:
        return None
    metrics = autoscaler_metrics(probe_scenario)
    return {"kind": scaler.kind, "metric": ",".join(metrics) or None, "target": getattr(scaler, "target", None)}


def _fleet_fields(candidate: Candidate, count: int, scenario: Any) -> dict[str, Any]:
    serving = scenario.serving
    fixed = candidate.fleet == "fixed"
    return {
        "hardware": candidate.hardware,
        "gpus_per_replica": scenario.hardware.gpus_per_replica,
        "fleet": candidate.fleet,
        "replicas": count if fixed else None,
        "min_replicas": None if fixed else candidate.floor,
        "max_replicas": None if fixed else count,
        "autoscaler": _autoscaler(candidate, scenario),
        "max_wait_ms": window_ms(scenario),
        "max_batch_size": serving.batching.max_batch_size if window_ms(scenario) is not None else None,
        "vary": dict(candidate.vary),
    }


def probe_status(planner: Planner, line: Line, probe: Probe) -> tuple[str, str]:
    """(status, reason) of a simulated configuration under every rule."""
    verdict = probe.verdict
    assert verdict is not None
    rules = planner.rules
    if probe.rho_peak >= 1.0:
        return "unstable", verdict.reason
    if verdict.status != "meets":
        return verdict.status, verdict.reason
    if probe.rho_peak > rules.max_utilization + 1e-9:
        return "fails", f"headroom: peak load is {probe.rho_peak:.0%} of capacity (at most {rules.max_utilization:.0%})"
    crowded = llm_headroom(probe.replications)
    if crowded is not None:
        return "fails", crowded
    if not planner.eligible(line, probe):
        return "fails", f"N+1: {verdict.reason}, but one replica fewer does not meet the SLO"
    return "meets", verdict.reason


def probe_row(planner: Planner, line: Line, probe: Probe) -> dict[str, Any]:
    """One simulated configuration as a plan.json row."""
    summary = probe.summary or {}
    verdict = probe.verdict
    assert verdict is not None
    status, reason = probe_status(planner, line, probe)
    cost_h = cost_per_hour(probe)
    replicas = summary.get("replicas") or {}
    return {
        "key": probe.key,
        **_fleet_fields(line.candidate, probe.count, probe.scenario),
        "cost_usd_per_h": cost_h,
        "cost_usd_per_month": None if cost_h is None else monthly_usd(cost_h, planner.rules.hours_per_month),
        "usd_per_million_requests": (summary.get("cost") or {}).get("usd_per_million_requests"),
        "usd_per_million_output_tokens": (summary.get("cost") or {}).get("usd_per_million_output_tokens"),
        "p50_ms": (summary.get("latency_ms") or {}).get("p50"),
        **llm_tails(summary, planner.slo),
        "tail_ms": verdict.tail_ms,
        "tail_percentile": verdict.tail_percentile,
        "tail_ci95_ms": verdict.tail_ci95_ms,
        "slo_attainment": (summary.get("slo") or {}).get("attainment"),
        "utilization": summary.get("utilization"),
        "rho_peak": probe.rho_peak,
        "headroom": 1.0 - probe.rho_peak,
        "replications": len(probe.replications),
        "requests": int((summary.get("requests") or {}).get("arrived", 0)),
        "replicas_mean": replicas.get("mean"),
        "cold_starts": replicas.get("cold_starts"),
        "status": status,
        "reason": reason,
    }


def llm_tails(summary: dict[str, Any], slo: dict[str, Any]) -> dict[str, Any]:
    """An LLM run's TTFT and TPOT at the SLO percentile (`ttft_ms`, `tpot_ms`; None for other runs)."""
    key = tail_key(float(slo.get("percentile") or 99.0))
    return {name: (summary.get(name) or {}).get(key) for name in ("ttft_ms", "tpot_ms")}


def unsimulated_row(planner: Planner, line: Line) -> dict[str, Any]:
    """A line that ended without a simulation of its own: pruned (its cost lower bound beats
    nothing found) or with nothing to search (the headroom rule needs more than the bound)."""
    candidate = line.candidate
    count = line.search.lowest_open()
    scenario = candidate.at(candidate.floor)
    bound = planner.lower_bound(line)
    _, peak_rps = candidate.offered_rps()
    rho_peak = peak_rps / (candidate.capacity_per_replica_rps() * count)
    if line.pruned:
        status = "pruned"
        reason = f"not simulated: costs at least {bound:.4g} USD/h, more than the pick"
    else:
        status, reason = "fails", line.infeasible or "nothing to search"
    return {
        "key": None, **_fleet_fields(candidate, count, scenario),
        "cost_usd_per_h": bound, "cost_usd_per_month": monthly_usd(bound, planner.rules.hours_per_month),
        "usd_per_million_requests": None, "usd_per_million_output_tokens": None, "p50_ms": None,
        "ttft_ms": None, "tpot_ms": None, "tail_ms": None, "tail_percentile": None,
        "tail_ci95_ms": None, "slo_attainment": None, "utilization": None, "rho_peak": rho_peak,
        "headroom": 1.0 - rho_peak, "replications": 0, "requests": 0, "replicas_mean": None,
        "cold_starts": None, "status": status, "reason": reason,
    }  # fmt: skip


def line_rows(planner: Planner, line: Line) -> list[dict[str, Any]]:
    """Every row of a line: its simulated configurations by count, or one row when it has none."""
    rows = [probe_row(planner, line, line.probes[count]) for count in sorted(line.probes)]
    if line.pruned or line.infeasible or not rows:
        rows.append(unsimulated_row(planner, line))
    return rows


def pick_of(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cheapest row that meets every rule (ties: the lower tail latency)."""
    meeting = [r for r in rows if r["status"] == "meets" and r["cost_usd_per_h"] is not None]
    return min(meeting, key=lambda r: (r["cost_usd_per_h"], r["tail_ms"] or 0.0), default=None)


def closest_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to `CLOSEST` simulated rows nearest the SLO: the highest attainment, then the cheapest."""
    simulated = [r for r in rows if r["status"] in ("fails", "undecided") and r["slo_attainment"] is not None]
    simulated.sort(key=lambda r: (-r["slo_attainment"], r["cost_usd_per_h"] or 0.0))
    return simulated[:CLOSEST]


def level_results(planner: Planner, levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """plan.json's `levels`: per traffic level its offered load, pick (or closest) and rows."""
    results = []
    for index, load in enumerate(levels):
        lines = [line for line in planner.lines if line.candidate.level == index]
        rows = [row for line in lines for row in line_rows(planner, line)]
        pick = pick_of(rows)
        mean_rps, peak_rps = lines[0].candidate.offered_rps() if lines else (None, None)
        fixed = bool(lines) and lines[0].candidate.fleet == "fixed"  # an autoscaler follows the day itself
        binding = binding_hour(lines[0].candidate.at(lines[0].candidate.floor)) if fixed else None
        results.append({"load": load, "offered_rps": mean_rps, "peak_offered_rps": peak_rps, "pick": pick,
                        "closest": [] if pick is not None else closest_of(rows), "candidates": rows,
                        "binding_hour": binding})  # fmt: skip
    return results


def rules_text(rules: SafetyRules) -> str:
    """The rules in force, one line (for the terminal)."""
    return (f"rules: peak load <= {rules.max_utilization:.0%} of capacity; the 95% interval of the tail within "
            f"the SLO ({rules.initial_replications}..{rules.max_replications} replications); "
            f">= {rules.min_replicas} replicas" + ("; N+1" if rules.n_plus_one else ""))  # fmt: skip

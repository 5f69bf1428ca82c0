"""The summary of a batch job: makespan, throughput, utilization, cost and the deadline, with the
top-level keys of the real-time summary where they mean something for a job (`latency_ms` is the
time from submission until an item's result is committed), for one replication and combined."""

from __future__ import annotations

import math
from array import array
from typing import TYPE_CHECKING, Any

import numpy as np

from capsim.hardware.cost import billed_cost, replica_energy
from capsim.metrics.summary import clean_json, t95
from capsim.serving.batchjob.checks import batch_serving
from capsim.serving.batchjob.job import BatchJob, as_changes, step_at, step_means

if TYPE_CHECKING:
    from capsim.scenario.schema import Scenario

_SERIES_POINTS = 500
_QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def _completion_ms(commits: list[tuple[float, int]]) -> dict[str, float | None]:
    """Percentiles of item completion time (submission → committed), each item weighted once."""
    if not commits:
        return {"mean": None, **dict.fromkeys(_QUANTILES), "max": None}
    times = np.array([t for t, _ in commits])
    counts = np.array([n for _, n in commits], dtype=float)
    order = np.argsort(times, kind="stable")
    times, counts = times[order], counts[order]
    cumulative = np.cumsum(counts)
    total = cumulative[-1]
    out: dict[str, float | None] = {"mean": float(np.dot(times, counts) / total * 1000.0)}
    for key, q in _QUANTILES.items():
        # The smallest time by which at least q of the items are done.
        out[key] = float(times[np.searchsorted(cumulative, q * total - 1e-9 * total)] * 1000.0)
    out["max"] = float(times[-1] * 1000.0)
    return out


def _batch_ms(service_s: array[float]) -> dict[str, float | None]:
    if not service_s:
        return {"mean": None, "p50": None, "p99": None, "max": None}
    arr = np.frombuffer(service_s) * 1000.0
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}  # fmt: skip


def replication_summary(scenario: Scenario, seed: int, job: BatchJob, end_s: float) -> dict[str, Any]:
    """The summary of one simulated job that ran until `end_s` (its makespan, or the horizon)."""
    serving = batch_serving(scenario)
    record = job.record
    done, remaining = record.items_done, job.remaining_items()
    makespan_s = record.makespan_s
    billed = {"on_demand": 0.0, "spot": 0.0}
    for worker in record.workers:
        assert worker.left_s is not None  # closed at end_s
        billed["spot" if worker.on_spot else "on_demand"] += worker.left_s - worker.launched_s
    billed_s = billed["on_demand"] + billed["spot"]
    spot_usd_per_hour = serving.spot.price_usd_per_hour if serving.spot is not None else 0.0
    cost = billed_cost(scenario.hardware.usd_per_hour, billed["on_demand"], billed["spot"], spot_usd_per_hour)
    usd = cost["usd"]
    phases = record.phase_s
    deadline_s = serving.deadline_s
    by_deadline = sum(n for t, n in record.commits if deadline_s is not None and t <= deadline_s)
    met = None if deadline_s is None else bool(makespan_s is not None and makespan_s <= deadline_s)
    warnings = []
    if makespan_s is None:
        warnings.append(f"the job did not finish within duration_s ({scenario.duration_s:g} s): "
                        f"{remaining} of {record.total_items} items left")  # fmt: skip
    if billed_s > 0 and phases["read_stall"] > phases["compute"]:
        warnings.append(
            f"I/O-bound: workers waited on input reads {phases['read_stall']:.4g} worker-s against "
            f"{phases['compute']:.4g} worker-s computing (serving.read_mb_per_s limits the job)"
        )
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "mode": "batch",
        "seed": seed,
        "replications": 1,
        "simulated_s": end_s,
        "makespan_s": makespan_s,
        "deadline_s": deadline_s,
        "deadline_met": met,
        "items": {
            "total": record.total_items,
            "done": done,
            "remaining": remaining,
            "scored": record.items_scored,
            "lost": record.items_lost,
            "partitions": len(serving.dataset.sizes(serving.workers)),
        },
        "throughput_rps": done / end_s if end_s > 0 else math.nan,
        "latency_ms": _completion_ms(record.commits),
        "batch_service_ms": _batch_ms(record.batch_service_s),
        "utilization": phases["compute"] / billed_s if billed_s > 0 else math.nan,
        "worker_s": {
            "billed": billed_s,
            **phases,
            "lost_compute": record.lost_compute_s,
            "idle": billed_s - sum(phases.values()),
        },
        "workers": {
            "initial": serving.workers,
            "initial_spot": serving.spot_workers(serving.workers),
            "launched": len(record.workers),
            "spot_interruptions": record.interruptions,
        },
        "cost": {
            **cost,
            "usd_per_hour": usd / (end_s / 3600.0) if end_s > 0 else math.nan,
            "usd_per_million_items": usd / done * 1e6 if done else math.nan,
        },
        "slo": {
            "deadline_s": deadline_s,
            "met": met,
            "attainment": by_deadline / record.total_items if deadline_s is not None else None,
            "goodput_rps": by_deadline / deadline_s if deadline_s is not None else None,
        },
        "service": scenario.service.describe(),
        "warnings": warnings,
        "ci95": {},
    }
    # A worker is busy while it computes; reading input and waiting are billed at idle power.
    energy = replica_energy(scenario.hardware, billed_s, phases["compute"])
    if energy is not None:
        summary["energy"] = {**energy, "joules_per_item": energy["joules"] / done if done else math.nan}
    return clean_json(summary)


def timeseries(job: BatchJob, end_s: float) -> dict[str, np.ndarray]:
    """Job progress on a grid of ~500 points over [0, end_s]: items done at each point; workers
    computing and workers billed averaged over the interval ending at each point."""
    record = job.record
    times = np.linspace(0.0, end_s, _SERIES_POINTS + 1)
    billed_changes = [(w.launched_s, 1) for w in record.workers]
    billed_changes += [(w.left_s, -1) for w in record.workers if w.left_s is not None]
    return {
        "time_s": times,
        "items_done": step_at(as_changes(record.commits), times),
        "workers_busy": step_means(record.busy_changes(), times),
        "workers_billed": step_means(as_changes(billed_changes), times),
    }


# Figures given a 95% confidence half-width across replications.
_CI_PATHS = (("makespan_s",), ("throughput_rps",), ("utilization",), ("cost", "usd"), ("slo", "attainment"))


def _average(values: list[Any]) -> Any:
    """The mean of numbers (None if any replication has none); dicts are averaged key by key."""
    first = values[0]
    if isinstance(first, dict):
        return {k: _average([v.get(k) for v in values]) for k in first}
    if all(v == first for v in values):
        return first  # the same in every replication (counts stay integers)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return float(np.mean(values))
    return first


def combine_replications(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Replications of one job: figures averaged (None where a replication did not finish),
    `deadline_met` true only if every replication met it, `slo.met_share` the share that did, and
    `ci95` half-widths of the main figures."""
    if len(summaries) == 1:
        return summaries[0]
    combined: dict[str, Any] = {}
    for key, value in summaries[0].items():
        column = [s[key] for s in summaries]
        if key in ("scenario", "mode", "seed", "service", "deadline_s"):
            combined[key] = value
        elif key == "warnings":
            combined[key] = list(dict.fromkeys(w for s in summaries for w in s["warnings"]))
        else:
            combined[key] = _average(column)
    verdicts = [s["deadline_met"] for s in summaries]
    if summaries[0]["deadline_s"] is not None:
        combined["deadline_met"] = all(verdicts)
        combined["slo"]["met"] = all(verdicts)
        combined["slo"]["met_share"] = sum(bool(v) for v in verdicts) / len(verdicts)
    combined["replications"] = len(summaries)
    ci: dict[str, Any] = {}
    for path in _CI_PATHS:
        values = []
        for s in summaries:
            node: Any = s
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            values.append(node)
        numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        half = None
        if len(numbers) == len(values) >= 2:
            arr = np.asarray(numbers)
            half = t95(arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size)
        ci[".".join(path)] = half
    combined["ci95"] = ci
    return clean_json(combined)

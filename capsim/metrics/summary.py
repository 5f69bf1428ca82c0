"""The run summary: the JSON contract of `capsim simulate --json`
(docs/design.md#contracts-other-parts-rely-on), for one replication and combined over replications
with 95% confidence intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capsim.hardware.cost import usd_per_million
from capsim.metrics.tally import RequestTally

# Two-sided 95% Student t quantiles for 1..30 degrees of freedom (the standard 3-decimal table).
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
    2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
    2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959963984540054  # the standard normal's 97.5% quantile


def t95(degrees_of_freedom: int) -> float:
    """The 97.5% quantile of Student's t (half-width factor of a 95% interval).

    Up to 30 degrees of freedom from the standard 3-decimal table (within 0.023% of the exact value),
    beyond it the Cornish–Fisher expansion in 1/ν to the third order (within 1e-6). Written here
    rather than taken from `scipy.stats.t.ppf` on purpose: `capsim simulate --replications` must run
    on the base install, which does not include scipy (tests/test_cli_startup.py hides it), and
    importing scipy.stats costs ~0.6 s. tests/metrics/test_t95.py checks it against scipy.
    """
    if degrees_of_freedom < 1:
        return math.nan
    if degrees_of_freedom <= len(_T95):
        return _T95[degrees_of_freedom - 1]
    v, z = float(degrees_of_freedom), _Z975
    return (z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3))  # fmt: skip


def _clean(value: float) -> float | None:
    """JSON has no NaN: missing values are null."""
    return None if value is None or not math.isfinite(value) else float(value)


def replication_summary(
    *,
    name: str,
    seed: int,
    duration_s: float,
    window_s: float,
    tally: RequestTally,
    levels: dict[str, float],
    replicas: dict[str, float],
    energy: dict[str, float] | None = None,
    cost_usd: dict[str, float],
    slo: tuple[float, float] | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The summary of one replication. `levels` holds window averages of the time-weighted
    quantities; `slo` is (latency_ms, percentile)."""
    usd = cost_usd["usd"]
    finished = tally.completed + tally.rejected + tally.timed_out
    slo_block: dict[str, Any] = {"latency_ms": None, "percentile": None, "attainment": None, "goodput_rps": None}
    if slo is not None:
        latency_ms, percentile = slo
        attainment = tally.within_slo / finished if finished else math.nan
        slo_block = {
            "latency_ms": latency_ms,
            "percentile": percentile,
            "attainment": attainment,
            "goodput_rps": tally.within_slo / window_s,
            "met": bool(finished and attainment >= percentile / 100.0),
        }
    summary: dict[str, Any] = {
        "scenario": name,
        "seed": seed,
        "replications": 1,
        "simulated_s": duration_s,
        "measured_s": window_s,
        "requests": {
            "arrived": tally.arrived,
            "completed": tally.completed,
            "rejected": tally.rejected,
            "timed_out": tally.timed_out,
            "in_flight": tally.in_flight,
            "cache_hits": tally.cache_hits,
        },
        "throughput_rps": tally.completed / window_s,
        "latency_ms": tally.latency_ms.summary(),
        "queue_wait_ms": tally.queue_wait_ms.summary(),
        "batch_size": tally.batch_size_summary(),
        "utilization": levels["utilization"],
        "replicas": replicas,
        "cost": {
            **cost_usd,
            "usd_per_hour": usd / (window_s / 3600.0),
            "usd_per_million_requests": usd_per_million(usd, tally.completed),
        },
        "slo": slo_block,
        "levels": {
            "queue_length_mean": levels["queue_length"],
            "in_service_mean": levels["in_service"],
            "busy_executors_mean": levels["busy_executors"],
            "served_sojourn_mean_s": tally.served_sojourn_s / max(tally.completed - tally.cache_hits, 1),
        },
        "ci95": {},
    }
    if energy is not None:
        summary["energy"] = {**energy, "joules_per_request": energy["joules"] / tally.completed
                             if tally.completed else math.nan}  # fmt: skip
    summary.update(extra)
    return clean_json(summary)


def clean_json(value: Any) -> Any:
    """Recursively replace NaN and infinities with None and numpy scalars with Python ones."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _clean(float(value))
    return value


# Keys whose values are combined by summing (counts) or by min/max rather than by averaging.
_SUMMED = {"requests"}
_SHARED = {"scenario", "seed", "simulated_s", "measured_s", "service", "warnings"}
_PER_PART = {"stages", "by_version"}  # a graph's blocks of per-stage or per-version summaries: each combined alone
_EXTREMES = {("latency_ms", "max"): max, ("queue_wait_ms", "max"): max, ("batch_size", "max"): max,
             ("replicas", "min"): min, ("replicas", "max"): max,
             ("lag", "max"): max, ("queue_depth", "max"): max,
             ("ttft_ms", "max"): max, ("tpot_ms", "max"): max, ("itl_ms", "max"): max}  # fmt: skip
_CI_KEYS = {
    "throughput_rps": None,
    "latency_ms": ("mean", "p50", "p90", "p95", "p99", "p999"),
    "queue_wait_ms": ("mean", "p50", "p99"),
    "utilization": None,
    "cost": ("usd_per_million_requests",),
    "slo": ("attainment", "goodput_rps"),
    "batch_size": ("mean",),
    "ttft_ms": ("mean", "p50", "p90", "p99"),  # LLM runs only (keys a summary lacks are skipped)
    "tpot_ms": ("mean", "p50", "p90", "p99"),
}


def _numbers(values: list[Any]) -> list[float]:
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _half_width(values: list[float]) -> float | None:
    if len(values) < 2:
        return None
    arr = np.asarray(values)
    return _clean(t95(arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))


def combine_replications(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary from several replications: counts summed, figures averaged (min/max for the
    extremes), and `ci95` half-widths of the main figures across replications."""
    if len(summaries) == 1:
        return summaries[0]
    first = summaries[0]
    combined: dict[str, Any] = {}
    for key, value in first.items():
        column = [s.get(key) for s in summaries]
        if key in _SHARED:
            combined[key] = value
        elif key in _PER_PART:
            combined[key] = {part: combine_replications([s[key][part] for s in summaries]) for part in value}
        elif key in _SUMMED:
            combined[key] = {k: sum(int(s[key][k]) for s in summaries) for k in value}
        elif isinstance(value, dict):
            block = {}
            for sub, sub_value in value.items():
                sub_column = [s[key].get(sub) for s in summaries]
                numbers = _numbers(sub_column)
                present = [v for v in sub_column if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if (key, sub) in _EXTREMES and present:
                    block[sub] = _EXTREMES[(key, sub)](present)  # replications with no value are skipped
                elif numbers and len(numbers) == len(sub_column) and not isinstance(sub_value, bool):
                    block[sub] = float(np.mean(numbers))
                else:
                    block[sub] = sub_value
            combined[key] = block
        else:
            numbers = _numbers(column)
            combined[key] = float(np.mean(numbers)) if numbers and len(numbers) == len(column) else value
    if "slo" in combined and combined["slo"].get("percentile") is not None:
        combined["slo"]["met"] = combined["slo"]["attainment"] >= combined["slo"]["percentile"] / 100.0
    combined["replications"] = len(summaries)
    ci: dict[str, Any] = {}
    for key, subs in _CI_KEYS.items():
        if key not in first:
            continue
        if subs is None:
            ci[key] = _half_width(_numbers([s.get(key) for s in summaries]))
        else:
            ci[key] = {sub: _half_width(_numbers([s[key].get(sub) for s in summaries])) for sub in subs}
    combined["ci95"] = ci
    return clean_json(combined)

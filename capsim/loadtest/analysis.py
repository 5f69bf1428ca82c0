"""From one step's request rows and workers' histograms to its summary (the keys of
`capsim simulate --json`, plus what a load test adds: uncorrected latency, send lag, validity,
and figures per request name).

Definitions (docs/loadtest.md repeats them):
- measured requests: intended send time in [t0 + warm-up, t0 + duration);
- the headline figures (`requests`, `throughput_rps`, `latency_ms`, ...) are over *inference*
  requests (`records.request_kind`); `by_name` gives every request name its own counts and latency;
- `throughput_rps`: measured requests that completed (2xx) per second of measured time;
- `latency_ms`: from the *intended* send (coordinated-omission corrected); `latency_uncorrected_ms`
  from the actual send; both over completed requests, from HDR histograms merged across workers;
- `send_lag_ms`: actual minus intended send time; `late_share` is the share of sends more than 1 ms
  late (perf_analyzer's figure, reported, not judged);
- `valid` is false when the generator, not the target, shaped what was measured (`judge_lateness`),
  when the in-flight cap held sends back, or when the run was interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from capsim.loadtest.histogram import LatencyHistogram, merge_all
from capsim.loadtest.llm_summary import is_llm_table, llm_step_figures, llm_warnings
from capsim.loadtest.records import INFERENCE, REJECTED_STATUSES, outcome
from capsim.loadtest.windows import stability, window_stats

LATE_SEND_MS = 1.0  # the `late_share` figure's threshold (perf_analyzer's), reported only
LATENESS_PERCENTILE = 99.0  # the tail percentile a load test reports and calibration fits
# Lateness may move the reported percentile by at most 10% of it: the calibration study's p99 target,
# and under the p99's own repeatability on a 2-vCPU machine (a typical pair of repeated 20 s runs of
# one point differs by 2-16% in p99; docs/validation.md, "How far apart are two measurements").
LATENCY_SHIFT_LIMIT = 0.10
GAP_FRACTION = 0.10  # a send later than the typical one by over 10% of the mean gap is displaced...
DISPLACED_LIMIT = 0.01  # ...and at most 1% of sends may be
GENERATOR_CPU_WARN_PERCENT = 90.0
GENERATOR_CPU_BUSY_PERCENT = 70.0  # above this a worker process is the bottleneck: add --workers
MAX_NAMES = 100  # names reported in `by_name`, most frequent first
# The summary's count key of each request outcome (records.outcome).
OUTCOME_KEYS = {"completed": "completed", "rejected": "rejected", "timed_out": "timed_out",
                "interrupted": "interrupted", "error": "errors"}


def read_worker_status(parts_dir: Path) -> list[dict[str, Any]]:
    """The last status (counters and cumulative histograms) each worker sent."""
    out = []
    for path in sorted(parts_dir.glob("worker-*.json")):
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(status, dict):  # (a damaged file of another shape counts as never sent)
            out.append(status)
    return out


def _histograms(
    statuses: list[dict[str, Any]], key: str, rows_ms: np.ndarray, rows_worker: np.ndarray, use_workers: bool
) -> LatencyHistogram:
    if use_workers:
        return merge_all(LatencyHistogram.decode(s["histograms"][key]) for s in statuses)
    # Workers' last snapshots are older than their last rows (interrupted run): rebuild per worker.
    return merge_all(
        LatencyHistogram.from_values_ms(rows_ms[rows_worker == w]) for w in np.unique(rows_worker)
    )


def _round(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), digits)


def percentile_bounds_ms(values_ms: np.ndarray, percentile: float, z: float = 1.96) -> tuple[float, float, float]:
    """(value, lower, upper): the sample's `percentile` and its ~95% confidence interval from order
    statistics, which holds for any distribution: the ranks n·q ∓ z·√(n·q·(1−q)). With 800
    requests the p99 is the 8th largest and its interval runs from about the 14th to the 3rd."""
    values = np.sort(np.asarray(values_ms, dtype=np.float64))
    n, q = values.size, percentile / 100.0
    half = z * np.sqrt(n * q * (1.0 - q))
    rank = int(np.clip(np.ceil(n * q), 1, n))  # the inverted-CDF percentile's rank (1-based)
    lo = int(np.clip(np.floor(n * q - half), 1, n))
    hi = int(np.clip(np.ceil(n * q + half), 1, n))
    return float(values[rank - 1]), float(values[lo - 1]), float(values[hi - 1])


def judge_lateness(
    lag_ms: np.ndarray, corrected_ms: np.ndarray, uncorrected_ms: np.ndarray, mean_gap_ms: float,
    percentile: float = LATENESS_PERCENTILE,
) -> dict[str, Any]:
    """Whether the generator's send lateness distorted what an open-loop step measured.

    `lag_ms`: each measured send's lag (actual − intended send, ≥ 0); `corrected_ms` /
    `uncorrected_ms`: the latencies of the completed measured requests, from the intended and from
    the actual send (the same requests, in the same order); `mean_gap_ms`: the schedule's mean
    inter-arrival gap (1 / offered rate).

    Lateness is harmless in itself: the corrected latency already counts from the intended send, so a
    late send is charged its lag and never hides a slow server. It matters in two ways only, and
    each has a limit:

    1. *It inflates the reported latency* by the client's own delay. Per request the corrected
       latency is the uncorrected one plus the lag, so the difference of the two p99s is how far
       lateness moved the reported figure. Valid when that shift is at most 10% of the corrected
       p99 (`LATENCY_SHIFT_LIMIT`), or when the corrected p99 stays inside the uncorrected p99's own
       95% confidence interval (`percentile_bounds_ms`): a shift smaller than the run's sampling
       uncertainty changes nothing the run can tell (in a short run the tail is sparse, and a
       0.5 ms lag can reorder the few requests around the p99).
    2. *It changes the arrival process the server sees* when sends move relative to each other (a
       lag common to every send only shifts the whole process in time). A send is *displaced* when
       it is later than the typical send (the median lag) by more than 10% of the mean inter-arrival
       gap: it may then have swapped places with, or crowded, its neighbours. Valid when at most 1%
       of sends are displaced.

    Returns `{"valid", "reasons", "percentile", "latency_ms", "uncorrected_ms", "latency_shift_ms",
    "latency_shift_share", "latency_shift_limit", "uncorrected_upper_ms", "displacement_threshold_ms",
    "displaced_share", "displaced_limit"}` (latencies at `percentile`, from the given samples).
    """
    lag_ms = np.asarray(lag_ms, dtype=np.float64)
    reasons: list[str] = []
    corrected_p = uncorrected_p = upper = shift_ms = shift_share = None
    if len(corrected_ms) and len(uncorrected_ms):
        corrected_p = percentile_bounds_ms(corrected_ms, percentile)[0]
        uncorrected_p, _, upper = percentile_bounds_ms(uncorrected_ms, percentile)
        shift_ms = max(corrected_p - uncorrected_p, 0.0)
        shift_share = shift_ms / corrected_p if corrected_p > 0 else 0.0
        if shift_share > LATENCY_SHIFT_LIMIT and corrected_p > upper:
            reasons.append(f"generator lag: send lateness moved the p{percentile:g} latency by {shift_ms:.3g} ms "
                           f"({shift_share:.1%} of {corrected_p:.3g} ms; limit {LATENCY_SHIFT_LIMIT:.0%}), beyond its "
                           f"95% confidence interval (up to {upper:.3g} ms)")
    threshold_ms = GAP_FRACTION * mean_gap_ms
    displaced = float(np.mean(lag_ms - np.median(lag_ms) > threshold_ms)) if lag_ms.size else 0.0
    if displaced > DISPLACED_LIMIT:
        reasons.append(f"generator lag: {displaced:.1%} of sends were more than {threshold_ms:.3g} ms later than the "
                       f"typical send (10% of the mean gap between sends; limit {DISPLACED_LIMIT:.0%}), so the server "
                       "saw a different arrival process")
    return {"valid": not reasons, "reasons": reasons, "percentile": percentile,
            "latency_ms": _round(corrected_p), "uncorrected_ms": _round(uncorrected_p),
            "latency_shift_ms": _round(shift_ms), "latency_shift_share": _round(shift_share, 6),
            "latency_shift_limit": LATENCY_SHIFT_LIMIT, "uncorrected_upper_ms": _round(upper),
            "displacement_threshold_ms": _round(threshold_ms),
            "displaced_share": round(displaced, 6), "displaced_limit": DISPLACED_LIMIT}


def lateness_remedy(cpu_percent_max: float, workers: int, load_average: float | None, cpus: int | None) -> str:
    """How to get a valid run after `judge_lateness` said no, from what held the generator back."""
    if load_average is not None and cpus and load_average > cpus:
        return (f"the machine was busy (load average {load_average:.1f} on {cpus} CPUs): run the generator on "
                "idle cores or on another machine than the server, or lower the rate")
    if cpu_percent_max > GENERATOR_CPU_BUSY_PERCENT:
        return (f"a worker process used {cpu_percent_max:.0f}% of a core: add worker processes (--workers "
                f"{max(2 * workers, 2)}) or run the generator on another machine, or lower the rate")
    return ("the generator's wake-ups were late: run it on another machine than the server (or on idle cores), "
            "add worker processes (--workers), or lower the rate")


def _counts(mask: np.ndarray, outcomes: np.ndarray) -> dict[str, int]:
    return {key: int(np.count_nonzero(mask & (outcomes == name))) for name, key in OUTCOME_KEYS.items()}


def _by_name(names: np.ndarray, kinds: np.ndarray, outcomes: np.ndarray, inside: np.ndarray,
             corrected_ms: np.ndarray) -> dict[str, dict[str, Any]]:
    """Measured counts and corrected latency of every request name (a custom locustfile's requests,
    health checks included), each with its kind."""
    out: dict[str, dict[str, Any]] = {}
    seen, frequency = np.unique(names[inside].astype(str), return_counts=True)
    # The most frequent names (a locustfile that names requests by URL can make thousands).
    for name in sorted(seen[np.argsort(-frequency, kind="stable")][:MAX_NAMES]):
        mine = inside & (names == name)
        ok = mine & (outcomes == "completed")
        counts = _counts(mine, outcomes)
        out[name] = {"kind": str(kinds[mine][0]), "arrived": int(np.count_nonzero(mine)), **counts,
                     "latency_ms": LatencyHistogram.from_values_ms(corrected_ms[ok]).summary_ms()}
    return out


def summarize_step(
    table: pa.Table,
    statuses: list[dict[str, Any]],
    *,
    start_s: float,
    warmup_s: float,
    duration_s: float,
    window_s: float,
    offered_rps: float,
    scheduled: np.ndarray | None,
    mode: str,
    partial: bool,
    slo_ttft_ms: float | None = None,
    slo_tpot_ms: float | None = None,
) -> dict[str, Any]:
    """Summary of one step; `scheduled` holds the schedule's offsets (open loop) to count what was planned.
    Streamed LLM rows (`--protocol openai`) add the simulator's LLM keys (`llm_summary.py`), with
    goodput against `slo_ttft_ms` / `slo_tpot_ms`."""
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in
            ("intended_s", "sent_s", "latency_ms", "latency_corrected_ms", "status", "worker")}
    errors = table.column("error").to_pylist()
    names = np.asarray(table.column("name").to_pylist(), dtype=object)
    # Folders written before the `kind` column held inference requests only.
    kinds = (np.asarray(table.column("kind").to_pylist(), dtype=object) if "kind" in table.column_names
             else np.full(table.num_rows, INFERENCE, dtype=object))
    kinds[kinds == None] = INFERENCE  # noqa: E711  (element-wise: rows written without a kind)
    inference = kinds == INFERENCE
    measure_lo = start_s + warmup_s
    measure_hi = start_s + duration_s
    if partial and cols["intended_s"].size:
        # Up to the last request recorded (inclusive; the µs absorbs float rounding of epoch times).
        measure_hi = min(measure_hi, float(np.max(cols["intended_s"])) + 1e-6)
    span_s = max(measure_hi - measure_lo, 1e-9)
    inside_any = (cols["intended_s"] >= measure_lo) & (cols["intended_s"] < measure_hi)
    inside = inside_any & inference
    outcomes = np.array([outcome(int(s), e) for s, e in zip(cols["status"], errors, strict=True)], dtype=object)
    ok = (outcomes == "completed") & inference
    good = inside & ok
    counts = _counts(inside, outcomes)

    all_final = bool(statuses) and all(s.get("final") for s in statuses) and not partial
    corrected = _histograms(statuses, "latency_corrected_ms", cols["latency_corrected_ms"][good],
                            cols["worker"][good], all_final)
    uncorrected = _histograms(statuses, "latency_ms", cols["latency_ms"][good], cols["worker"][good], all_final)
    lag_ms = np.maximum(cols["sent_s"][inside] - cols["intended_s"][inside], 0.0) * 1000.0
    lag = _histograms(statuses, "send_lag_ms", lag_ms, cols["worker"][inside], all_final)
    late_share = float(np.mean(lag_ms > LATE_SEND_MS)) if lag_ms.size else 0.0
    q = LATENESS_PERCENTILE
    lateness = judge_lateness(lag_ms, cols["latency_corrected_ms"][good], cols["latency_ms"][good],
                              mean_gap_ms=1000.0 / offered_rps if offered_rps > 0 else float("inf"), percentile=q)

    cap_hits = int(sum(s.get("cap_hits", 0) for s in statuses))
    cpu_max = max((float(s.get("cpu_percent_max", 0.0)) for s in statuses), default=0.0)
    reasons = []
    warnings = []
    if mode == "open":
        reasons.extend(lateness["reasons"])
    if cap_hits:
        reasons.append(f"in-flight cap reached {cap_hits} times: sends were held back")
    if partial:
        reasons.append("partial run (interrupted)")
    if not np.any(inside) and np.any(inside_any):
        warnings.append("no measured request is an inference request (the v2 infer route, /predict/MODEL or a "
                        "name given with --inference-name): the headline figures are empty, see by_name")

    sent_inside = (cols["sent_s"] >= measure_lo) & (cols["sent_s"] < measure_hi) & inference
    # Throughput counts completions *during* the measured time, whenever the request was meant to go.
    done_s = cols["sent_s"] + cols["latency_ms"] / 1000.0  # NaN for interrupted requests: never inside
    completed_inside = ok & (done_s >= measure_lo) & (done_s < measure_hi)
    windows = window_stats(cols["intended_s"][inference], done_s[inference],
                           cols["latency_corrected_ms"][inference], ok[inference], measure_lo, measure_hi, window_s)
    planned = None
    if scheduled is not None:
        planned = int(np.count_nonzero((scheduled >= warmup_s) & (scheduled < measure_hi - start_s)))
    arrived = int(np.count_nonzero(inside))
    llm: dict[str, Any] = {}
    if is_llm_table(table):
        finished = (outcomes != "interrupted") & inference
        llm = llm_step_figures(table, inside, ok, finished, span_s, slo_ttft_ms, slo_tpot_ms)
        warnings.extend(llm_warnings(llm, errors, inside & ~ok & finished))
    return {
        "mode": mode,
        "partial": partial,
        "measured_s": round(span_s, 6),
        "requests": {"arrived": arrived, **counts, "scheduled": planned,
                     "not_recorded": (planned - arrived) if planned is not None else None},
        "offered_rps": _round(offered_rps),
        "achieved_rps": _round(np.count_nonzero(sent_inside) / span_s),
        "throughput_rps": _round(np.count_nonzero(completed_inside) / span_s),
        "latency_ms": corrected.summary_ms(),
        "latency_uncorrected_ms": uncorrected.summary_ms(),
        "send_lag_ms": {**{k: lag.summary_ms()[k] for k in ("p50", "p99", "max")},
                        "late_share": round(late_share, 6), "late_threshold_ms": LATE_SEND_MS},
        "lateness": {k: v for k, v in lateness.items() if k != "reasons"} if mode == "open" else None,
        "rejected_statuses": sorted(REJECTED_STATUSES),
        # `dispatched`: sends the workers made, warm-up included (their last status): every one has a row.
        "generator": {"workers": len(statuses), "cap_hits": cap_hits,
                      "dispatched": int(sum(s.get("dispatched", 0) for s in statuses)),
                      "in_flight_max": int(max((s.get("in_flight_max", 0) for s in statuses), default=0)),
                      "cpu_percent_max": round(cpu_max, 1),
                      "cpu_percent_mean": max((float(s.get("cpu_percent_mean", 0.0)) for s in statuses),
                                              default=None),
                      "cpu_warning": cpu_max > GENERATOR_CPU_WARN_PERCENT,
                      "event_loop": sorted({str(s["event_loop"]) for s in statuses if s.get("event_loop")}),
                      "sender": sorted({str(s["sender"]) for s in statuses if s.get("sender")}),
                      "spin_ms": max((float(s["spin_ms"]) for s in statuses if s.get("spin_ms")), default=None)},
        "histogram_source": "workers" if all_final else "rows",
        "valid": not reasons,
        "invalid_reasons": reasons,
        "warnings": warnings,
        "windows": {"window_s": window_s, "per_window": windows, **stability(windows)},
        "by_name": _by_name(names, kinds, outcomes, inside_any, cols["latency_corrected_ms"]),
        **llm,
    }

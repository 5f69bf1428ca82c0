"""From one step's request rows and workers' histograms to its summary (the keys of
`capsim simulate --json`, plus what a load test adds: uncorrected latency, send lag, validity).

Definitions (docs/loadtest.md repeats them):
- measured requests: intended send time in [t0 + warm-up, t0 + duration);
- `throughput_rps`: measured requests that completed (2xx) per second of measured time;
- `latency_ms`: from the *intended* send (coordinated-omission corrected); `latency_uncorrected_ms`
  from the actual send; both over completed requests, from HDR histograms merged across workers;
- `send_lag_ms`: actual minus intended send time; a send is *late* when it lags by more than 1 ms
  (`late_share`; perf_analyzer warns above 1%);
- `valid` is false when the generator, not the target, shaped the load: more than 1% of sends
  lagging by more than max(1 ms, 10% of the median latency) — a lag that is small against the
  response time does not change what the server sees — or the in-flight cap held sends back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from capsim.loadtest.histogram import LatencyHistogram, merge_all
from capsim.loadtest.records import REJECTED_STATUSES, outcome
from capsim.loadtest.windows import stability, window_stats

LATE_SEND_MS = 1.0
LATE_SHARE_LIMIT = 0.01
LAG_LIMIT_FRACTION = 0.10
GENERATOR_CPU_WARN_PERCENT = 90.0


def read_worker_status(parts_dir: Path) -> list[dict[str, Any]]:
    """The last status (counters and cumulative histograms) each worker sent."""
    out = []
    for path in sorted(parts_dir.glob("worker-*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
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
) -> dict[str, Any]:
    """Summary of one step; `scheduled` holds the schedule's offsets (open loop) to count what was planned."""
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in
            ("intended_s", "sent_s", "latency_ms", "latency_corrected_ms", "status", "worker")}
    errors = table.column("error").to_pylist()
    measure_lo = start_s + warmup_s
    measure_hi = start_s + duration_s
    if partial and cols["intended_s"].size:
        # Up to the last request recorded (inclusive; the µs absorbs float rounding of epoch times).
        measure_hi = min(measure_hi, float(np.max(cols["intended_s"])) + 1e-6)
    span_s = max(measure_hi - measure_lo, 1e-9)
    inside = (cols["intended_s"] >= measure_lo) & (cols["intended_s"] < measure_hi)
    outcomes = np.array([outcome(int(s), e) for s, e in zip(cols["status"], errors, strict=True)], dtype=object)
    ok = outcomes == "completed"
    good = inside & ok
    counts = {k: int(np.count_nonzero(inside & (outcomes == k))) for k in ("completed", "rejected", "timed_out")}
    error_count = int(np.count_nonzero(inside & (outcomes == "error")))

    all_final = bool(statuses) and all(s.get("final") for s in statuses) and not partial
    corrected = _histograms(statuses, "latency_corrected_ms", cols["latency_corrected_ms"][good],
                            cols["worker"][good], all_final)
    uncorrected = _histograms(statuses, "latency_ms", cols["latency_ms"][good], cols["worker"][good], all_final)
    lag_ms = np.maximum(cols["sent_s"][inside] - cols["intended_s"][inside], 0.0) * 1000.0
    lag = _histograms(statuses, "send_lag_ms", lag_ms, cols["worker"][inside], all_final)
    late_share = float(np.mean(lag_ms > LATE_SEND_MS)) if lag_ms.size else 0.0
    # Validity: lag must be small against the latency being measured, and never above 1 ms at worst.
    p50_ms = uncorrected.percentile_ms(50.0) if uncorrected.count else 0.0
    lag_limit_ms = max(LATE_SEND_MS, LAG_LIMIT_FRACTION * p50_ms)
    over_limit_share = float(np.mean(lag_ms > lag_limit_ms)) if lag_ms.size else 0.0

    cap_hits = int(sum(s.get("cap_hits", 0) for s in statuses))
    cpu_max = max((float(s.get("cpu_percent_max", 0.0)) for s in statuses), default=0.0)
    reasons = []
    warnings = []
    if mode == "open" and over_limit_share > LATE_SHARE_LIMIT:
        reasons.append(f"generator lag: {over_limit_share:.1%} of sends more than {lag_limit_ms:.3g} ms late "
                       f"(limit {LATE_SHARE_LIMIT:.0%})")
    elif mode == "open" and late_share > LATE_SHARE_LIMIT:
        warnings.append(f"{late_share:.1%} of sends more than {LATE_SEND_MS:g} ms late: small against the "
                        f"{p50_ms:.3g} ms median latency, but above perf_analyzer's 1% threshold")
    if cap_hits:
        reasons.append(f"in-flight cap reached {cap_hits} times: sends were held back")
    if partial:
        reasons.append("partial run (interrupted)")

    sent_inside = (cols["sent_s"] >= measure_lo) & (cols["sent_s"] < measure_hi)
    # Throughput counts completions *during* the measured time, whenever the request was meant to go.
    done_s = cols["sent_s"] + cols["latency_ms"] / 1000.0
    completed_inside = ok & (done_s >= measure_lo) & (done_s < measure_hi)
    windows = window_stats(cols["intended_s"], done_s, cols["latency_corrected_ms"], ok, measure_lo, measure_hi,
                           window_s)
    planned = None
    if scheduled is not None:
        planned = int(np.count_nonzero((scheduled >= warmup_s) & (scheduled < measure_hi - start_s)))
    arrived = int(np.count_nonzero(inside))
    return {
        "mode": mode,
        "partial": partial,
        "measured_s": round(span_s, 6),
        "requests": {"arrived": arrived, **counts, "errors": error_count,
                     "scheduled": planned, "not_recorded": (planned - arrived) if planned is not None else None},
        "offered_rps": _round(offered_rps),
        "achieved_rps": _round(np.count_nonzero(sent_inside) / span_s),
        "throughput_rps": _round(np.count_nonzero(completed_inside) / span_s),
        "latency_ms": corrected.summary_ms(),
        "latency_uncorrected_ms": uncorrected.summary_ms(),
        "send_lag_ms": {**{k: lag.summary_ms()[k] for k in ("p50", "p99", "max")},
                        "late_share": round(late_share, 6), "late_threshold_ms": LATE_SEND_MS,
                        "limit_ms": round(lag_limit_ms, 4), "over_limit_share": round(over_limit_share, 6)},
        "rejected_statuses": sorted(REJECTED_STATUSES),
        "generator": {"workers": len(statuses), "cap_hits": cap_hits,
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
    }

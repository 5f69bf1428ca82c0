"""Measurement windows and the stability rule of perf_analyzer.

After the warm-up, a step is cut into windows of `window_s` seconds by intended send time. For each
window: completed throughput and the corrected p99. A step is *stable* when three consecutive
windows agree within 10% on both (max/min ≤ 1.10, perf_analyzer's `stability_window = 3` and
`--stability-percentage 10`); a window without completions is never stable.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.loadtest.histogram import LatencyHistogram

STABILITY_WINDOWS = 3
STABILITY_RATIO = 1.10


def window_stats(
    intended_s: np.ndarray,
    done_s: np.ndarray,
    corrected_ms: np.ndarray,
    ok: np.ndarray,
    start_s: float,
    end_s: float,
    window_s: float,
) -> list[dict[str, Any]]:
    """Per-window `{index, arrived, completed, throughput_rps, p99_ms}` over whole windows of [start_s, end_s).

    `arrived` and `p99_ms` are over requests *meant to be sent* in the window (their corrected latency);
    `completed`/`throughput_rps` count successful responses *received* in the window."""
    out: list[dict[str, Any]] = []
    n_windows = int(np.floor((end_s - start_s) / window_s + 1e-9))
    for i in range(n_windows):
        lo = start_s + i * window_s
        hi = lo + window_s
        inside = (intended_s >= lo) & (intended_s < hi)
        good = inside & ok
        completed = int(np.count_nonzero(ok & (done_s >= lo) & (done_s < hi)))
        p99 = LatencyHistogram.from_values_ms(corrected_ms[good]).percentile_ms(99.0) if good.any() else None
        out.append({"index": i, "arrived": int(np.count_nonzero(inside)), "completed": completed,
                    "throughput_rps": completed / window_s, "p99_ms": p99})
    return out


def _agree(values: list[float]) -> bool:
    low = min(values)
    return low > 0 and max(values) / low <= STABILITY_RATIO


def stability(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"stable", "stable_windows"}`: the last run of 3 consecutive windows that agree, if any."""
    found: list[int] | None = None
    for i in range(len(windows) - STABILITY_WINDOWS + 1):
        group = windows[i : i + STABILITY_WINDOWS]
        if any(w["completed"] == 0 or w["p99_ms"] is None for w in group):
            continue
        if _agree([w["throughput_rps"] for w in group]) and _agree([w["p99_ms"] for w in group]):
            found = [w["index"] for w in group]
    return {"stable": found is not None, "stable_windows": found, "rule": "3 consecutive windows, max/min <= 1.10 "
            "on throughput and p99"}

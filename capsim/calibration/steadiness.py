"""Was a measured point hit by something outside the model? A spike in one window's tail says so.

A replay predicts a server from its profile; it cannot predict a stall of the whole machine (another
process, the hypervisor, a slow page-in) that freezes the server for a hundred milliseconds once in
a minute. Such a stall owns the p99 of the step it falls in — at 150 req/s one 150 ms freeze delays
~1% of a 20 s step — and the point's error then measures the machine, not the model
(docs/validation.md: the calibration study's disturbed steps). The symptom is local in time: one
window's p99 far above the others'. Over the 108 steps recorded in `benchmarks/data/cpu-run3`,
`cpu-run4`, `cpu-run5` and the repeatability runs, the largest 5 s window's p99 (the load tester's
own per-window figures, in each summary.json) was at most 4.6× the median window's in 90% of the
steps; the rest (5–31×) are the steps a single stall hit, among them every step named as disturbed
in docs/validation.md but one (a step slow throughout, which no window comparison can see).
"""

from __future__ import annotations

import numpy as np

from capsim.calibration.runfolder import LoadPoint
from capsim.loadtest.windows import window_stats

WINDOW_S = 5.0  # the load tester's own stability window
SPIKE_RATIO = 5.0  # above the 90th percentile (4.6×) of the recorded CPU steps
MIN_REQUESTS_PER_WINDOW = 100  # a p99 of fewer requests is its one or two largest values
MIN_WINDOWS = 3  # a median of fewer windows says nothing about the usual tail


def tail_spike(point: LoadPoint) -> tuple[float, float, float, float] | None:
    """(window p99 ms, median window p99 ms, ratio, window start s after the warm-up) of the window
    with the highest p99, when it is at least `SPIKE_RATIO` × the median window's; else None. The
    windows are the load tester's own (`capsim.loadtest.windows.window_stats`), the figures the
    threshold was chosen on."""
    requests = point.requests
    if not {"intended_s", "sent_s", "latency_ms", "latency_corrected_ms", "status"} <= set(requests.columns):
        return None
    lo_s, hi_s = point.window_s
    latency_ms = requests["latency_ms"].to_numpy()
    windows = window_stats(requests["intended_s"].to_numpy(), requests["sent_s"].to_numpy() + latency_ms / 1000.0,
                           requests["latency_corrected_ms"].to_numpy(), requests["status"].to_numpy() == 200,
                           lo_s, hi_s, WINDOW_S)  # fmt: skip
    p99s = [(float(w["p99_ms"]), int(w["index"])) for w in windows
            if w["p99_ms"] is not None and w["arrived"] >= MIN_REQUESTS_PER_WINDOW]  # fmt: skip
    if len(p99s) < MIN_WINDOWS:
        return None
    median_ms = float(np.median([p for p, _ in p99s]))
    worst_ms, worst_index = max(p99s)
    if median_ms <= 0 or worst_ms < SPIKE_RATIO * median_ms:
        return None
    return worst_ms, median_ms, worst_ms / median_ms, worst_index * WINDOW_S


def spike_warning(point: LoadPoint) -> str | None:
    """One line for the calibrate / validate warnings, or None when the point's tail is steady."""
    spike = tail_spike(point)
    if spike is None:
        return None
    worst_ms, median_ms, ratio, start_s = spike
    return (f"{point.label}: the {WINDOW_S:g} s window from +{start_s:g} s has a p99 of {worst_ms:.3g} ms, "
            f"{ratio:.1f}× the median window's ({median_ms:.3g} ms): something outside the server's model "
            "(a stall of the machine) hit this step, and its measured tail says more about that than the "
            "replay can")

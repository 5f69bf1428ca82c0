"""A measured step hit by a stall of the machine is named in calibrate's and validate's warnings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from capsim.calibration.runfolder import LoadPoint
from capsim.calibration.steadiness import SPIKE_RATIO, spike_warning, tail_spike


def point(stall_at_s: float | None, stall_ms: float = 150.0) -> LoadPoint:
    """60 s at 150 req/s, latencies ~2 ms; a stall freezes the server for `stall_ms` from `stall_at_s`
    after the warm-up: every request sent during it waits for its end."""
    rng = np.random.default_rng(11)
    start_s, warmup_s = 1000.0, 5.0
    intended_s = start_s + np.cumsum(rng.exponential(1 / 150.0, 10_000))
    intended_s = intended_s[intended_s < start_s + 65.0]
    latency_ms = rng.lognormal(np.log(2.0), 0.3, intended_s.size)
    if stall_at_s is not None:
        begin_s = start_s + warmup_s + stall_at_s
        hit = (intended_s >= begin_s) & (intended_s < begin_s + stall_ms / 1000)
        latency_ms[hit] += (begin_s + stall_ms / 1000 - intended_s[hit]) * 1000
    requests = pd.DataFrame({"intended_s": intended_s, "sent_s": intended_s, "latency_ms": latency_ms,
                             "latency_corrected_ms": latency_ms, "status": np.full(intended_s.size, 200)})  # fmt: skip
    return LoadPoint(run_dir=Path("runs/mlp"), step=1, steps_in_run=4, rate_rps=150.0, model="mlp",
                     start_s=start_s, warmup_s=warmup_s, duration_s=65.0, requests=requests, batches=None,
                     server=None)  # fmt: skip


def test_a_steady_step_gives_no_warning() -> None:
    assert tail_spike(point(None)) is None
    assert spike_warning(point(None)) is None


def test_one_stall_is_found_in_its_window() -> None:
    spike = tail_spike(point(stall_at_s=32.0))
    assert spike is not None
    worst_ms, median_ms, ratio, start_s = spike
    assert start_s == 30.0  # the 5 s window holding the stall
    assert ratio >= SPIKE_RATIO and worst_ms > 50.0 and 2.0 < median_ms < 6.0
    message = spike_warning(point(stall_at_s=32.0))
    assert message is not None and message.startswith("mlp#1: the 5 s window from +30 s")


def test_a_short_hiccup_is_not_a_spike() -> None:
    # 5 ms catches about one request: inside the usual spread of a window's p99.
    assert tail_spike(point(stall_at_s=32.0, stall_ms=5.0)) is None

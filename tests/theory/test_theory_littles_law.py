"""Little's law, L = λW and Lq = λWq, on every bundled scenario (scenarios/*.yaml, globbed at test time).

L and Lq come from the summary's time-weighted levels; λ and W from its per-request statistics.
Over a finite window the two sides differ only by boundary terms (requests carried in across the
warm-up boundary, or still in the system when arrivals stop), which have mean zero in steady state.
The tolerance is a 99.9% confidence interval from batch means (docs/sources.md#queueing-theory): the measurement window
is cut into 20 batches, and for each batch b the difference D_b = L_b - λ_b W_b is computed from the
per-request intervals; the summary's L - λW (which is the mean of the D_b) must lie within the
interval's half-width of zero. Adjacent D_b are negatively correlated (what spills out of one batch
is carried into the next), so the independent-batches interval is conservative.

Timed-out requests occupy the queue until their deadline: they count in L, so they count in W too
(the time they spent queued). Rejected requests and cache hits never enter a replica.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from capsim.engine import RunResult, simulate
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT, TIMED_OUT
from capsim.scenario import load_scenario
from tests.theory.replications import interval

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
TARGET_ARRIVALS = 40_000  # per scenario: a second or two of simulation
BATCHES = 20


def scenario_files() -> list[Path]:
    return sorted(SCENARIOS.glob("*.yaml"))


def has_key(node: Any, key: str) -> bool:
    """Whether `key` appears anywhere in a parsed YAML tree."""
    if isinstance(node, dict):
        return key in node or any(has_key(v, key) for v in node.values())
    if isinstance(node, list):
        return any(has_key(v, key) for v in node)
    return False


def realtime_without_autoscaling(path: Path) -> bool:
    """Little's law is checked on fixed fleets: no `autoscaling` key anywhere, realtime mode."""
    data: Any = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or has_key(data, "autoscaling"):
        return False
    serving = data.get("serving")
    return isinstance(serving, dict) and serving.get("mode", "realtime") == "realtime"


def shortened(path: Path) -> Any:
    """The scenario with its duration cut to about TARGET_ARRIVALS arrivals (never lengthened)."""
    full = load_scenario(path)
    rate = full.workload.arrival.mean_rate_rps(full.duration_s)
    duration_s = min(full.duration_s, TARGET_ARRIVALS / rate) if rate > 0 else full.duration_s
    warmup_s = min(full.warmup_s, duration_s / 10)
    return load_scenario(path, [f"duration_s={duration_s!r}", f"warmup_s={warmup_s!r}"])


def system_intervals(result: RunResult) -> dict[str, np.ndarray]:
    """For every request that entered a replica's queue: arrival, end of queueing, end of service
    (model time, without the fixed overhead), as seen by the level statistics. Open intervals
    (still queued or in service when the run stopped) end at +inf."""
    cols = result.replications[0].requests
    assert cols is not None
    overhead_s = result.scenario.serving.overhead_ms / 1000.0
    outcome, cache_hit = cols["outcome"], cols["cache_hit"]
    started = np.isfinite(cols["start_s"]) & ~cache_hit
    entered = started | (outcome == TIMED_OUT) | ((outcome == IN_FLIGHT) & ~cache_hit)
    arrival = cols["arrival_s"][entered]
    start = cols["start_s"][entered]
    queued_until = np.where(
        started[entered], start, np.where(outcome[entered] == TIMED_OUT, cols["end_s"][entered], np.inf)
    )
    served_until = np.where(
        outcome[entered] == COMPLETED,
        cols["end_s"][entered] - overhead_s,
        np.where(started[entered], np.inf, queued_until),
    )
    return {"arrival": arrival, "queued_until": queued_until, "left": served_until}


def overlap(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> float:
    """Total length of [start, end) ∩ [lo, hi)."""
    return float(np.clip(np.minimum(ends, hi) - np.maximum(starts, lo), 0.0, None).sum())


def batch_differences(arrival: np.ndarray, until: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """D_b = L_b - λ_b W_b over BATCHES equal batches of [lo, hi), for intervals [arrival, until)."""
    edges = np.linspace(lo, hi, BATCHES + 1)
    horizon = float(np.max(until[np.isfinite(until)], initial=hi))
    length = np.minimum(until, max(horizon, hi)) - arrival  # open intervals count up to the end of the run
    diffs = []
    for b0, b1 in itertools.pairwise(edges):
        level = overlap(arrival, until, b0, b1) / (b1 - b0)
        mine = (arrival >= b0) & (arrival < b1)
        diffs.append(level - float(length[mine].sum()) / (b1 - b0))
    return np.asarray(diffs)


PATHS = [p for p in scenario_files() if realtime_without_autoscaling(p)]


@pytest.mark.skipif(not PATHS, reason="no realtime scenarios without autoscaling in scenarios/")
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_littles_law(path: Path) -> None:
    scenario = shortened(path)
    result = simulate(scenario)
    summary = result.summary
    levels = summary["levels"]
    lo, hi = scenario.warmup_s, scenario.duration_s
    window_s = hi - lo
    iv = system_intervals(result)
    in_window = (iv["arrival"] >= lo) & (iv["arrival"] < hi)

    # Time the timed-out requests spent queued: part of L, so part of λW too.
    timed_out = np.isfinite(iv["queued_until"]) & (iv["queued_until"] == iv["left"]) & in_window
    timed_out_s = float((iv["queued_until"] - iv["arrival"])[timed_out].sum())
    served_rate = (summary["requests"]["completed"] - summary["requests"]["cache_hits"]) / window_s

    # The level statistics are the interval overlaps with the window (an exact identity).
    queue_level = overlap(iv["arrival"], iv["queued_until"], lo, hi) / window_s
    system_level = overlap(iv["arrival"], iv["left"], lo, hi) / window_s
    assert levels["queue_length_mean"] == pytest.approx(queue_level, rel=1e-9, abs=1e-12)
    assert levels["queue_length_mean"] + levels["in_service_mean"] == pytest.approx(system_level, rel=1e-9, abs=1e-12)

    # L = λW.
    big_l = levels["queue_length_mean"] + levels["in_service_mean"]
    lam_w = served_rate * levels["served_sojourn_mean_s"] + timed_out_s / window_s
    ci = interval(batch_differences(iv["arrival"], iv["left"], lo, hi))
    assert abs(big_l - lam_w) <= ci.half_width, (
        f"{path.name}: L = {big_l:.6g} vs λW = {lam_w:.6g}; batch-means interval of L - λW: {ci}"
    )
    if summary["requests"]["in_flight"] == 0:  # the batches add up to the whole window
        assert ci.mean == pytest.approx(big_l - lam_w, rel=1e-6, abs=1e-9 * max(big_l, 1.0))

    # Lq = λWq.
    lq = levels["queue_length_mean"]
    lam_wq = served_rate * summary["queue_wait_ms"]["mean"] / 1000.0 + timed_out_s / window_s
    ci_q = interval(batch_differences(iv["arrival"], iv["queued_until"], lo, hi))
    assert abs(lq - lam_wq) <= ci_q.half_width + 1e-12, (
        f"{path.name}: Lq = {lq:.6g} vs λWq = {lam_wq:.6g}; batch-means interval of Lq - λWq: {ci_q}"
    )

"""Trace test of the Kubernetes HPA (no `behavior`, Kubernetes' default code path) in the full
simulation: a load step, hand-computed replica counts at the documented times (15 s sync, 0.1
tolerance, at most max(2 x current, 4) per sync, unready pods counted at 0 on scale-up, cold start),
and the 300 s downscale stabilization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from tests.scenario_helpers import make_scenario


def paced_trace(tmp_path: Path) -> dict[str, object]:
    # 40 req/s until 300 s, 400 req/s until 600 s, 40 req/s after: evenly spaced, so the rps metric
    # is exact and the expected decisions can be computed by hand.
    parts = [np.arange(0, 300, 1 / 40), np.arange(300, 600, 1 / 400), np.arange(600, 1200, 1 / 40)]
    path = tmp_path / "paced.csv"
    path.write_text("time_s\n" + "\n".join(f"{t:.6f}" for t in np.concatenate(parts)) + "\n")
    return {"kind": "trace", "path": str(path), "time_unit": "s"}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> object:
    tmp_path = tmp_path_factory.mktemp("hpa")
    scenario = make_scenario(
        "duration_s=1200",
        workload={"arrival": paced_trace(tmp_path)},
        service={"kind": "deterministic", "mean_ms": 5},
        hardware={"name": "gpu", "usd_per_hour": 3.6},
        serving={
            "mode": "realtime",
            "replicas": 1,
            "instances_per_replica": 4,
            "autoscaling": {"kind": "hpa", "min_replicas": 1, "max_replicas": 20, "metric": "rps", "target": 50},
            "cold_start": {
                "provisioning_s": {"kind": "fixed", "value_s": 30},
                "image_pull_s": {"kind": "fixed", "value_s": 0},
                "model_load_s": {"kind": "fixed", "value_s": 0},
            },
        },
    )
    return simulate(scenario).replications[0]


def test_scale_up_follows_sync_period_rate_limits_and_cold_start(run: object) -> None:
    desired = run.replica_changes["desired"]  # type: ignore[attr-defined]
    ready = run.replica_changes["ready"]  # type: ignore[attr-defined]
    # t=315: 400 rps on 1 pod, ratio 8 -> 8, limited to max(2 x 1, 4) = 4.
    # t=330: 1 ready + 3 unready (counted at 0): ratio 400 / (50 x 4) = 2 -> 8 (limit max(2 x 4, 4) = 8).
    # t=345: the first three are ready; 4 ready + 4 unready: ratio 400 / (50 x 8) = 1.0 -> stay.
    assert [(t, v) for t, v in desired if t < 700] == [(0.0, 1), (315.0, 4), (330.0, 8)]
    assert [(t, v) for t, v in ready if t < 700] == [(0.0, 1), (345.0, 4), (360.0, 8)]


def test_scale_down_waits_for_the_stabilization_window(run: object) -> None:
    desired = run.replica_changes["desired"]  # type: ignore[attr-defined]
    # Load drops at 600 s; the last recommendation of 8 (made at 600 s, window (585, 600]) still
    # counts at t = 900 (without `behavior` one exactly 300 s old is not yet "before" the cutoff) and
    # is gone at t = 915.
    assert [(t, v) for t, v in desired if t >= 700] == [(915.0, 1)]


def test_cost_is_the_integral_of_billed_replicas(run: object) -> None:
    billed = run.replica_changes["billed"]  # type: ignore[attr-defined]
    ends = [t for t, _ in billed[1:]] + [1200.0]
    area = sum(v * (end - t) for (t, v), end in zip(billed, ends, strict=True))
    assert run.summary["cost"]["usd"] == pytest.approx(area / 3600 * 3.6, rel=1e-12)  # type: ignore[attr-defined]
    assert run.summary["replicas"]["cold_starts"] == 7  # type: ignore[attr-defined]

"""A batch job takes its batch times from the same service models as real-time serving, measured
profiles included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from capsim import simulate
from capsim.servicetime import ProfileService
from tests.batchjob.helpers import batch_scenario

PROFILE = Path(__file__).resolve().parents[2] / "scenarios" / "profiles" / "mlp-cpu.json"


def test_batches_follow_the_measured_distribution() -> None:
    # 20,000 items in batches of 32 (32 is measured) and one partition: 625 batches, all full.
    scenario = batch_scenario(service={"kind": "profile", "path": str(PROFILE)}, batch_size=32,
                              dataset={"items": 20_000, "partitions": 1})  # fmt: skip
    summary = simulate(scenario, replications=4).summary
    assert summary["service"]["kind"] == "profile"
    profile = ProfileService(path=str(PROFILE))
    levels = np.asarray(profile.profile.quantile_levels)
    q_ms = profile.quantiles_s(32) * 1000.0
    expected_mean_ms = float(np.sum(np.diff(levels) * (q_ms[1:] + q_ms[:-1]) / 2))  # mean of the inverse CDF
    assert summary["batch_service_ms"]["mean"] == pytest.approx(expected_mean_ms, rel=0.03)
    assert q_ms[0] <= summary["batch_service_ms"]["p50"] <= q_ms[-1]
    # One worker, no reads, no start-up: the makespan is the sum of the batch times.
    assert summary["makespan_s"] == pytest.approx(625 * summary["batch_service_ms"]["mean"] / 1000.0, rel=1e-9)

"""Replications of a batch job: independent draws, combined by the documented rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from capsim import simulate
from capsim.metrics.summary import t95
from tests.batchjob.helpers import batch_scenario


def test_combined_summary_follows_the_replications() -> None:
    # Lognormal batch times (CV 0.5) and random start-up: every replication differs.
    scenario = batch_scenario(workers=3, dataset={"items": 3000, "partitions": 9},
                              service={"kind": "lognormal", "mean_ms": 1000.0, "cv": 0.5},
                              worker_startup={"provisioning_s": {"kind": "uniform", "low_s": 0, "high_s": 20}},
                              deadline_s=21.0)  # fmt: skip
    result = simulate(scenario, replications=5)
    reps = [r.summary for r in result.replications]
    makespans = np.array([s["makespan_s"] for s in reps])
    assert len(set(makespans.tolist())) == 5  # independent streams per replication
    combined = result.summary
    assert combined["replications"] == 5
    assert combined["makespan_s"] == pytest.approx(makespans.mean())
    verdicts = [s["deadline_met"] for s in reps]
    assert 0 < sum(verdicts) < 5, "the deadline is chosen to split the replications"
    assert combined["deadline_met"] is all(verdicts) and combined["deadline_met"] is False
    assert combined["slo"]["met_share"] == pytest.approx(sum(verdicts) / 5)
    assert combined["ci95"]["makespan_s"] == pytest.approx(t95(4) * makespans.std(ddof=1) / math.sqrt(5))
    assert combined["items"]["total"] == 3000 and isinstance(combined["items"]["total"], int)

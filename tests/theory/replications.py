"""Helpers of the theory tests: small scenarios, per-replication statistics and confidence intervals.

Tolerances are never guessed percentages. Every comparison with a closed form uses R independent
replications (`simulate(..., replications=R)`): their mean and a Student-t interval at a high
confidence level (99.9% by default, so that a correct simulator fails a given check at a random
seed with probability 0.001). Where a test is meant to catch a bias of a few percent it also
asserts that the interval is narrow enough to do so (`max_rel_half_width`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from capsim.engine import RunResult
from capsim.metrics.request_log import COMPLETED
from capsim.scenario import Scenario, apply_overrides, validate_scenario

LEVEL = 0.999


def queue_scenario(
    *,
    rate_rps: float,
    service: dict[str, Any],
    instances: int = 1,
    duration_s: float,
    warmup_s: float,
    seed: int = 1,
    max_batch_size: int = 1,
    max_wait_ms: float = 0.0,
    overrides: list[str] | None = None,
) -> Scenario:
    """One replica with `instances` executors fed by Poisson arrivals."""
    data: dict[str, Any] = {
        "name": "theory",
        "duration_s": duration_s,
        "warmup_s": warmup_s,
        "seed": seed,
        "workload": {"arrival": {"kind": "poisson", "rate_rps": rate_rps}},
        "service": service,
        "hardware": {"name": "test", "usd_per_hour": 1.0},
        "serving": {
            "mode": "realtime",
            "replicas": 1,
            "instances_per_replica": instances,
            "batching": {"max_batch_size": max_batch_size, "max_wait_ms": max_wait_ms},
        },
    }
    return validate_scenario(apply_overrides(data, overrides or []), "theory")


def served(result: RunResult, replication: int) -> dict[str, np.ndarray]:
    """Columns of the requests of one replication that arrived after warm-up and were served by a
    model (completed, not cache hits): the population of the summary's queue-wait statistics."""
    cols = result.replications[replication].requests
    assert cols is not None
    keep = (cols["arrival_s"] >= result.scenario.warmup_s) & (cols["outcome"] == COMPLETED) & ~cols["cache_hit"]
    return {name: col[keep] for name, col in cols.items()}


def waits_s(result: RunResult, replication: int) -> np.ndarray:
    """Queue waits (arrival -> batch start) of the served requests of one replication."""
    cols = served(result, replication)
    return cols["start_s"] - cols["arrival_s"]


def per_replication(result: RunResult, *path: str) -> np.ndarray:
    """A summary figure (e.g. "queue_wait_ms", "mean") of each replication."""
    values = []
    for rep in result.replications:
        node: Any = rep.summary
        for key in path:
            node = node[key]
        values.append(float(node))
    return np.asarray(values)


@dataclass(frozen=True)
class Interval:
    """A Student-t confidence interval of the mean of independent replications."""

    mean: float
    half_width: float
    level: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.6g} ± {self.half_width:.3g} ({self.level:.1%}, {self.n} replications)"


def interval(values: np.ndarray, level: float = LEVEL) -> Interval:
    """The `level` confidence interval of the mean of `values` (one value per replication)."""
    values = np.asarray(values, dtype=float)
    n = values.size
    assert n >= 2, "a confidence interval needs at least two replications"
    t = float(stats.t.ppf(0.5 + level / 2, n - 1))
    return Interval(float(values.mean()), t * float(values.std(ddof=1)) / math.sqrt(n), level, n)


def assert_matches(
    values: np.ndarray,
    expected: float,
    what: str,
    *,
    level: float = LEVEL,
    max_rel_half_width: float | None = None,
) -> Interval:
    """Assert that the closed form `expected` lies in the confidence interval of the replications'
    mean, and (optionally) that the interval is narrow enough to detect a bias of that size."""
    ci = interval(values, level)
    assert abs(ci.mean - expected) <= ci.half_width, (
        f"{what}: simulated {ci} does not contain the closed form {expected:.6g} (off by {ci.mean / expected - 1:+.2%})"
    )
    if max_rel_half_width is not None:
        assert ci.half_width <= max_rel_half_width * abs(expected), (
            f"{what}: interval {ci} too wide to detect a {max_rel_half_width:.1%} bias; lengthen the run"
        )
    return ci

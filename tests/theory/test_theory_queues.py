"""M/M/1, M/M/c (Erlang C) and M/D/1 (Pollaczek-Khinchine): one replica, c instances, batch size 1.

Every check compares a closed form with the mean of R independent replications and a 99.9% t
interval (tests/theory/replications.py); the main figures also assert that the interval is narrow
enough to catch a bias of a few percent. Runs are sized for ρ <= 0.75 (docs/sources.md#queueing-theory: near saturation
the waits are too autocorrelated for a fast test); the tight, long variants are marked slow.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import pytest

from capsim.engine import RunResult, simulate
from capsim.metrics.summary import t95
from tests.theory import formulas as f
from tests.theory.replications import assert_matches, per_replication, queue_scenario, served, waits_s

MEAN_MS = 10.0  # E[S]; times scale, so only ρ, c and the number of customers matter


@dataclass(frozen=True)
class MmcCase:
    c: int
    rho: float
    customers_per_replication: int
    replications: int
    seed: int
    # the widest 99.9% interval, relative to the closed form, that each check accepts (its power)
    wait_width: float
    sojourn_width: float
    pwait_width: float

    @property
    def mu(self) -> float:
        return 1000.0 / MEAN_MS

    @property
    def lam(self) -> float:
        return self.rho * self.c * self.mu

    def __str__(self) -> str:
        return f"M/M/{self.c} rho={self.rho}"


FAST_CASES = [
    MmcCase(c=1, rho=0.5, customers_per_replication=20_000, replications=20, seed=1,
            wait_width=0.05, sojourn_width=0.03, pwait_width=0.02),
    MmcCase(c=4, rho=0.6, customers_per_replication=30_000, replications=20, seed=1,
            wait_width=0.07, sojourn_width=0.02, pwait_width=0.035),
]  # fmt: skip
SLOW_CASES = [
    # The mmc-check model (c = 4, ρ = 0.75), long enough to resolve the mean wait to ~±3%.
    MmcCase(c=4, rho=0.75, customers_per_replication=150_000, replications=20, seed=1,
            wait_width=0.035, sojourn_width=0.012, pwait_width=0.012),
]  # fmt: skip


@functools.lru_cache(maxsize=1)
def run_mmc(case: MmcCase) -> RunResult:
    """The replications of one case (cached: two tests read the M/M/1 run)."""
    duration_s = case.customers_per_replication / case.lam
    scenario = queue_scenario(
        rate_rps=case.lam,
        service={"kind": "exponential", "mean_ms": MEAN_MS},
        instances=case.c,
        duration_s=duration_s,
        warmup_s=duration_s / 10,
        seed=case.seed,
    )
    return simulate(scenario, replications=case.replications)


def check_mmc(case: MmcCase) -> None:
    result = run_mmc(case)
    c, lam, mu = case.c, case.lam, case.mu
    reps = range(case.replications)
    ms = 1000.0

    wq = f.mmc_wait_mean(c, lam, mu)
    assert_matches(
        per_replication(result, "queue_wait_ms", "mean") / ms, wq, f"{case}: mean wait Wq",
        max_rel_half_width=case.wait_width,
    )  # fmt: skip
    assert_matches(
        per_replication(result, "latency_ms", "mean") / ms, wq + 1 / mu, f"{case}: mean time in system W",
        max_rel_half_width=case.sojourn_width,
    )  # fmt: skip
    assert_matches(
        np.array([np.mean(waits_s(result, r) > 0) for r in reps]), f.erlang_c(c, lam / mu), f"{case}: P(wait > 0)",
        max_rel_half_width=case.pwait_width,
    )  # fmt: skip
    # The tail: P(Wq > t) = C exp(-(cμ - λ) t) at the 90% and 99% quantiles, and the quantile itself.
    for p in (0.9, 0.99):
        t = f.mmc_wait_quantile(c, lam, mu, p)
        assert_matches(np.array([np.mean(waits_s(result, r) > t) for r in reps]), 1 - p, f"{case}: P(Wq > q{p})")
    assert_matches(
        per_replication(result, "queue_wait_ms", "p90") / ms, f.mmc_wait_quantile(c, lam, mu, 0.9), f"{case}: Wq p90"
    )
    assert_matches(per_replication(result, "utilization"), case.rho, f"{case}: utilization", max_rel_half_width=0.02)
    # Lq from the time-weighted level statistics (not from the per-request waits).
    assert_matches(
        per_replication(result, "levels", "queue_length_mean"), f.mmc_queue_length_mean(c, lam, mu), f"{case}: Lq"
    )
    assert_matches(
        per_replication(result, "levels", "queue_length_mean") + per_replication(result, "levels", "in_service_mean"),
        f.mmc_queue_length_mean(c, lam, mu) + lam / mu,
        f"{case}: L",
    )
    # Exponential service really is exponential with mean E[S] (a KS-style check on the pooled draws
    # would be overkill: the mean and the squared CV pin the first two moments).
    service = np.concatenate([served(result, r)["end_s"] - served(result, r)["start_s"] for r in reps])
    assert service.mean() == pytest.approx(1 / mu, rel=5 / math.sqrt(service.size))
    assert (service.std() / service.mean()) ** 2 == pytest.approx(1.0, rel=12 / math.sqrt(service.size))
    # The summary's own 95% half-width is the textbook one over the same replications.
    values = per_replication(result, "queue_wait_ms", "mean")
    expected_ci = t95(len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    assert result.summary["ci95"]["queue_wait_ms"]["mean"] == pytest.approx(expected_ci, rel=1e-9)
    assert result.summary["queue_wait_ms"]["mean"] == pytest.approx(values.mean(), rel=1e-12)


@pytest.mark.parametrize("case", FAST_CASES, ids=str)
def test_mmc_matches_erlang_c(case: MmcCase) -> None:
    check_mmc(case)


@pytest.mark.slow
@pytest.mark.parametrize("case", SLOW_CASES, ids=str)
def test_mmc_matches_erlang_c_tightly(case: MmcCase) -> None:
    check_mmc(case)


def test_mm1_sojourn_time_is_exponential() -> None:
    """M/M/1: the time in system is exponential with rate μ - λ; check its 50/90/99% quantiles."""
    case = FAST_CASES[0]
    assert case.c == 1
    result = run_mmc(case)
    lam, mu = case.lam, case.mu
    for p in (0.5, 0.9, 0.99):
        t = f.mm1_sojourn_quantile(lam, mu, p)
        fractions = []
        for r in range(case.replications):
            cols = served(result, r)
            fractions.append(np.mean(cols["end_s"] - cols["arrival_s"] > t))
        assert_matches(np.array(fractions), 1 - p, f"M/M/1: P(W > q{p})")
    assert_matches(
        per_replication(result, "latency_ms", "p90") / 1000, f.mm1_sojourn_quantile(lam, mu, 0.9), "M/M/1: W p90"
    )


@pytest.mark.parametrize(("rho", "seed"), [(0.5, 1), (0.7, 2)])
def test_md1_matches_pollaczek_khinchine(rho: float, seed: int) -> None:
    """M/D/1: mean wait ρD/(2(1-ρ)) and the whole waiting-time distribution (Erlang's formula)."""
    d_s = MEAN_MS / 1000.0
    lam = rho / d_s
    customers, replications = 30_000, 20
    duration_s = customers / lam
    scenario = queue_scenario(
        rate_rps=lam,
        service={"kind": "deterministic", "mean_ms": MEAN_MS},
        duration_s=duration_s,
        warmup_s=duration_s / 10,
        seed=seed,
    )
    result = simulate(scenario, replications=replications)
    reps = range(replications)
    name = f"M/D/1 rho={rho}"
    assert_matches(
        per_replication(result, "queue_wait_ms", "mean") / 1000, f.md1_wait_mean(lam, d_s), f"{name}: Wq",
        max_rel_half_width=0.05,
    )  # fmt: skip
    # P-K in its general form gives the same number (E[S^2] = D^2).
    assert f.mg1_wait_mean(lam, d_s, d_s**2) == pytest.approx(f.md1_wait_mean(lam, d_s))
    waits = [waits_s(result, r) for r in reps]
    # P(Wq = 0) = 1 - ρ exactly: a request that finds an idle executor starts at its arrival instant.
    assert_matches(np.array([np.mean(w == 0) for w in waits]), 1 - rho, f"{name}: P(Wq = 0)", max_rel_half_width=0.03)
    for t_over_d in (0.5, 1.0, 1.5, 3.0, 6.0):
        t = t_over_d * d_s
        assert_matches(
            np.array([np.mean(w <= t) for w in waits]), f.md1_wait_cdf(lam, d_s, t), f"{name}: P(Wq <= {t_over_d} D)",
            max_rel_half_width=0.02,
        )  # fmt: skip
    # Deterministic service: every batch takes exactly D.
    for r in reps:
        cols = served(result, r)
        np.testing.assert_allclose(cols["end_s"] - cols["start_s"], d_s, rtol=0, atol=1e-9)

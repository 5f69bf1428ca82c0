"""The closed forms themselves, against textbook values and independent derivations."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from tests.theory import formulas as f


def erlang_c_by_factorials(c: int, a: Fraction) -> Fraction:
    """C(c, a) from P0 with exact factorials (docs/sources.md#queueing-theory, the first form), for
    cross-checking the recursion."""
    rho = a / c
    tail = a**c / (math.factorial(c) * (1 - rho))
    p0 = 1 / (sum(a**k / math.factorial(k) for k in range(c)) + tail)
    return tail * p0


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [
        (1, 1.0, 0.5),  # a / (1 + a)
        (2, 1.0, 0.2),  # (a^2/2) / (1 + a + a^2/2)
        (10, 5.0, 0.018385),  # telephone-traffic table: 10 trunks, 5 Erlangs
        (5, 2.0, 0.036697),  # table value
    ],
)
def test_erlang_b_table_values(c: int, a: float, expected: float) -> None:
    assert f.erlang_b(c, a) == pytest.approx(expected, abs=5e-7 if expected < 0.1 else 1e-12)


@pytest.mark.parametrize(("c", "a"), [(1, 0.5), (2, 1.0), (4, 3.0), (10, 6.0), (10, 9.5), (30, 24.0)])
def test_erlang_c_recursion_equals_factorial_form(c: int, a: float) -> None:
    exact = erlang_c_by_factorials(c, Fraction(a))
    assert f.erlang_c(c, a) == pytest.approx(float(exact), rel=1e-12)


def test_erlang_c_known_values() -> None:
    assert f.erlang_c(1, 0.7) == pytest.approx(0.7, rel=1e-14)  # M/M/1: P(wait) = rho
    assert f.erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-14)
    assert f.erlang_c(4, 3.0) == pytest.approx(27 / 53, rel=1e-14)  # exact: (81/8) / (1+3+9/2+9/2+81/8)=(81/8)/(159/8)


def test_erlang_c_large_c_does_not_overflow() -> None:
    # 200! overflows a float; the recursion does not care.
    value = f.erlang_c(200, 180.0)
    assert 0 < value < 1
    assert value == pytest.approx(float(erlang_c_by_factorials(200, Fraction(180))), rel=1e-10)


def test_mmc_with_one_server_is_mm1() -> None:
    lam, mu = 0.6, 1.0
    assert f.mmc_wait_mean(1, lam, mu) == pytest.approx(f.mm1_wait_mean(lam, mu), rel=1e-14)
    assert f.mm1_wait_mean(lam, mu) == pytest.approx(1.5)  # rho / (mu - lam)
    assert f.mm1_sojourn_mean(lam, mu) == pytest.approx(2.5)
    assert f.mm1_sojourn_quantile(lam, mu, 0.9) == pytest.approx(math.log(10) / 0.4)


def test_mmc_tail_and_quantile_are_consistent() -> None:
    c, lam, mu = 4, 3.0, 1.0
    cwait = f.erlang_c(c, lam / mu)
    assert f.mmc_wait_tail(c, lam, mu, 0.0) == pytest.approx(cwait)
    q = f.mmc_wait_quantile(c, lam, mu, 0.9)
    assert f.mmc_wait_tail(c, lam, mu, q) == pytest.approx(0.1, rel=1e-12)
    # A quantile below 1 - C is zero (that much of the mass waits not at all).
    assert f.mmc_wait_quantile(c, lam, mu, 0.3) == 0.0
    # Little on the queue: Lq = lam Wq.
    assert f.mmc_queue_length_mean(c, lam, mu) == pytest.approx(lam * f.mmc_wait_mean(c, lam, mu), rel=1e-12)


def test_pollaczek_khinchine_special_cases() -> None:
    lam, mean_s = 0.8, 1.0
    # Exponential service: E[S^2] = 2 E[S]^2 gives M/M/1.
    assert f.mg1_wait_mean(lam, mean_s, 2 * mean_s**2) == pytest.approx(f.mm1_wait_mean(lam, 1 / mean_s))
    # Deterministic: half the M/M/1 wait.
    assert f.md1_wait_mean(lam, mean_s) == pytest.approx(0.5 * f.mm1_wait_mean(lam, 1 / mean_s))
    assert f.md1_wait_mean(lam, mean_s) == pytest.approx(2.0)


@pytest.mark.parametrize("x", [Fraction(0), Fraction(1, 3), Fraction(-7, 2), Fraction(25), Fraction(-40), Fraction(60)])
def test_exp_fraction(x: Fraction) -> None:
    assert float(f.exp_fraction(x)) == pytest.approx(math.exp(x), rel=1e-15)


def test_exp_fraction_is_far_more_precise_than_float() -> None:
    # exp(1) to 50 digits.
    e50 = Fraction(271828182845904523536028747135266249775724709369995, 10**50)
    assert abs(f.exp_fraction(Fraction(1)) - e50) < Fraction(1, 10**49)


def test_md1_cdf_first_intervals_in_closed_form() -> None:
    lam, d = 0.8, 1.0
    rho = lam * d
    assert f.md1_wait_cdf(lam, d, 0.0) == pytest.approx(1 - rho, rel=1e-14)  # P(no wait)
    for t in (0.25, 0.5, 0.99):  # t < D: only k = 0
        assert f.md1_wait_cdf(lam, d, t) == pytest.approx((1 - rho) * math.exp(lam * t), rel=1e-14)
    for t in (1.0, 1.5, 1.9):  # D <= t < 2D: k = 0, 1
        expected = (1 - rho) * (math.exp(lam * t) - lam * (t - d) * math.exp(lam * (t - d)))
        assert f.md1_wait_cdf(lam, d, t) == pytest.approx(expected, rel=1e-12)


def test_md1_cdf_is_a_distribution_with_the_pk_mean() -> None:
    lam, d = 0.5, 1.0
    # E[Wq] = integral of P(Wq > t): Gauss-Legendre on each [kD, (k+1)D], where the CDF is smooth
    # (its derivative jumps at multiples of D). Beyond 16 D the tail is below 1e-8 of the mean.
    nodes, weights = np.polynomial.legendre.leggauss(8)
    integral = 0.0
    previous = 0.0
    for k in range(16):
        cdf = [f.md1_wait_cdf(lam, d, k * d + (x + 1) / 2 * d) for x in nodes]
        integral += sum(w * (1 - p) for w, p in zip(weights, cdf, strict=True)) * d / 2
        assert f.md1_wait_cdf(lam, d, k * d) >= previous
        previous = f.md1_wait_cdf(lam, d, k * d)
    assert previous == pytest.approx(1.0, abs=1e-7)
    assert integral == pytest.approx(f.md1_wait_mean(lam, d), rel=1e-7)


def test_md1_cdf_stays_exact_where_float_summation_breaks_down() -> None:
    lam, d, t = 0.9, 1.0, 60.0
    # The naive float sum loses every digit to cancellation (terms reach ~exp(54) ~ 3e23).
    naive = (1 - lam * d) * sum(
        (lam * (k * d - t)) ** k / math.factorial(k) * math.exp(-lam * (k * d - t)) for k in range(int(t / d) + 1)
    )
    exact = f.md1_wait_cdf(lam, d, t)
    assert 0.99 < exact < 1.0
    assert not 0 <= naive <= 1 or abs(naive - exact) > 1e-6


def test_mmck_blocking() -> None:
    # No waiting room: Erlang B.
    assert f.mmck_blocking(5, 2.0, 0) == pytest.approx(f.erlang_b(5, 2.0), rel=1e-14)
    # M/M/1/N (N = 1 + k places in all): (1 - ρ) ρ^N / (1 - ρ^(N+1)).
    for rho, k in ((0.5, 3), (0.9, 10), (1.5, 2)):
        n = 1 + k
        assert f.mmck_blocking(1, rho, k) == pytest.approx((1 - rho) * rho**n / (1 - rho ** (n + 1)), rel=1e-12)
    # At ρ = 1, M/M/1/N blocks 1/(N + 1).
    assert f.mmck_blocking(1, 1.0, 4) == pytest.approx(1 / 6, rel=1e-12)
    # Against the stationary distribution summed with exact factorials.
    c, a, k = 3, Fraction(5, 2), 4
    weights = [a**n / math.factorial(n) for n in range(c + 1)]
    weights += [a**c / math.factorial(c) * (a / c) ** j for j in range(1, k + 1)]
    assert f.mmck_blocking(c, float(a), k) == pytest.approx(float(weights[-1] / sum(weights)), rel=1e-12)
    # A long queue at ρ < 1 almost never blocks.
    assert f.mmck_blocking(4, 2.0, 200) < 1e-50

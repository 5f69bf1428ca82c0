"""Closed forms of the queues the simulator is validated against (docs/sources.md#queueing-theory).

Notation: arrival rate `lam`, service rate per server `mu` (E[S] = 1/mu), `c` servers, offered load
a = lam/mu, utilization rho = a/c < 1. Wq is the wait in queue, W = Wq + E[S] the time in system.

Erlang C is computed from the Erlang B recursion (factorials overflow long before c = 200). The M/D/1
waiting-time CDF is an alternating sum whose terms grow like exp(lam*t); it is summed in exact
rational arithmetic (`fractions.Fraction`), with each exponential evaluated to ~200 bits, so it stays
accurate for any t/D.
"""

from __future__ import annotations

import math
from fractions import Fraction

# Bits kept by the rational exponential: 2^-200 ~ 6e-61, far below what the alternating M/D/1 sum
# can amplify for the t/D used in tests (the largest term is about exp(lam*t)).
_EXP_BITS = 200


def erlang_b(c: int, a: float) -> float:
    """Blocking probability of M/M/c/c with offered load `a`: B_0 = 1, B_k = a B_{k-1} / (k + a B_{k-1})."""
    if c < 0 or a < 0:
        raise ValueError("need c >= 0 and a >= 0")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(c: int, a: float) -> float:
    """P(wait > 0) in M/M/c with offered load a = lam/mu < c: C = B / (1 - rho (1 - B))."""
    rho = a / c
    if not 0 <= rho < 1:
        raise ValueError(f"unstable: rho = {rho}")
    b = erlang_b(c, a)
    return b / (1.0 - rho * (1.0 - b))


def mmc_wait_mean(c: int, lam: float, mu: float) -> float:
    """Mean wait in queue Wq = C / (c mu - lam)."""
    return erlang_c(c, lam / mu) / (c * mu - lam)


def mmc_wait_tail(c: int, lam: float, mu: float, t: float) -> float:
    """P(Wq > t) = C exp(-(c mu - lam) t) for t >= 0."""
    return erlang_c(c, lam / mu) * math.exp(-(c * mu - lam) * t)


def mmc_wait_quantile(c: int, lam: float, mu: float, p: float) -> float:
    """The p-quantile of Wq: max(0, ln(C / (1 - p)) / (c mu - lam))."""
    return max(0.0, math.log(erlang_c(c, lam / mu) / (1.0 - p)) / (c * mu - lam))


def mmc_queue_length_mean(c: int, lam: float, mu: float) -> float:
    """Lq = C rho / (1 - rho)."""
    rho = lam / (c * mu)
    return erlang_c(c, lam / mu) * rho / (1.0 - rho)


def mm1_sojourn_mean(lam: float, mu: float) -> float:
    """M/M/1 time in system W = 1 / (mu - lam)."""
    if lam >= mu:
        raise ValueError("unstable")
    return 1.0 / (mu - lam)


def mm1_wait_mean(lam: float, mu: float) -> float:
    """M/M/1 wait in queue Wq = rho / (mu - lam)."""
    return (lam / mu) / (mu - lam)


def mm1_sojourn_quantile(lam: float, mu: float, p: float) -> float:
    """The time in system of M/M/1 is exponential with rate mu - lam: its p-quantile."""
    return -math.log(1.0 - p) / (mu - lam)


def mg1_wait_mean(lam: float, mean_s: float, second_moment_s2: float) -> float:
    """Pollaczek-Khinchine: Wq = lam E[S^2] / (2 (1 - rho))."""
    rho = lam * mean_s
    if rho >= 1:
        raise ValueError("unstable")
    return lam * second_moment_s2 / (2.0 * (1.0 - rho))


def md1_wait_mean(lam: float, d: float) -> float:
    """M/D/1: Wq = rho D / (2 (1 - rho))."""
    rho = lam * d
    return rho * d / (2.0 * (1.0 - rho))


def exp_fraction(x: Fraction, bits: int = _EXP_BITS) -> Fraction:
    """exp(x) for rational x as a Fraction with relative error below 2^-bits.

    Range reduction is by halving (ln 2 is irrational, so x = n ln 2 + r would not be exact): exp(x) =
    exp(x / 2^m)^(2^m) with |x / 2^m| <= 1/2, the inner value from its Taylor series. Every partial
    result is rounded to a dyadic fraction with `bits` + 64 + 2m bits after the binary point, so the
    numbers stay small while the rounding stays far below 2^-bits (relative: results are >= e^-1/2
    before squaring, and each squaring only doubles the relative error)."""
    x = Fraction(x)
    m = 0
    y = x
    while abs(y) > Fraction(1, 2):
        y /= 2
        m += 1
    guard = bits + 64 + 2 * m
    scale = 1 << guard
    term = Fraction(1)
    total = Fraction(1)
    k = 0
    eps = Fraction(1, scale)
    while abs(term) > eps:
        k += 1
        term = Fraction(round(term * y / k * scale), scale)
        total += term
    for _ in range(m):
        total = Fraction(round(total * total * scale), scale)
    return total


def md1_wait_cdf(lam: Fraction | float, d: Fraction | float, t: Fraction | float) -> float:
    """P(Wq <= t) in M/D/1 (Erlang's formula):

        (1 - rho) sum_{k=0}^{floor(t/D)} [lam (kD - t)]^k / k! exp(-lam (kD - t))

    summed exactly in rationals (the terms alternate in sign and grow like exp(lam t)). Float
    arguments are converted exactly (`Fraction(float)`), so the only rounding is in exp."""
    lam, d, t = Fraction(lam), Fraction(d), Fraction(t)
    if t < 0:
        return 0.0
    rho = lam * d
    if rho >= 1:
        raise ValueError("unstable")
    total = Fraction(0)
    for k in range(math.floor(t / d) + 1):
        u = lam * (k * d - t)  # <= 0
        total += u**k / math.factorial(k) * exp_fraction(-u)
    return float((1 - rho) * total)


def mmck_blocking(c: int, a: float, k: int) -> float:
    """P(an arrival is rejected) in M/M/c/(c+k): c servers and k waiting places, offered load a.

    By PASTA it is the stationary probability of c + k in the system: p_n ∝ a^n/n! for n <= c and
    a^c/c! ρ^(n-c) beyond (ρ = a/c). Computed from the Erlang B recursion to stay finite for large c:
    with B = B(c, a), p_c = B / (1 - B + B S) where S = sum_{j=0..k} ρ^j, and p_(c+k) = p_c ρ^k.
    Any ρ is allowed: the system is finite."""
    if c < 1 or k < 0 or a < 0:
        raise ValueError("need c >= 1, k >= 0, a >= 0")
    b = erlang_b(c, a)
    rho = a / c
    s = sum(rho**j for j in range(k + 1))
    p_c = b / (1.0 - b + b * s)
    return p_c * rho**k

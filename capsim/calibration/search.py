"""A derivative-free minimizer (Nelder–Mead) for objectives evaluated by simulation.

The black-box fit minimizes a loss that is only available by running the simulator, so there is
no gradient; with common random numbers (a fixed seed) the loss is a deterministic, piecewise
smooth function of the parameters, which is what Nelder–Mead handles well. Written here rather
than imported because capsim's runtime does not depend on scipy; the coefficients are the standard
ones (reflection 1, expansion 2, contraction 1/2, shrink 1/2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class SearchResult:
    """The best point found, its loss, and how many evaluations it took."""

    x: np.ndarray
    loss: float
    evaluations: int
    converged: bool


def nelder_mead(
    loss: Callable[[np.ndarray], float], x0: np.ndarray, step: np.ndarray | float = 0.5, *,
    max_evaluations: int = 200, x_tolerance: float = 1e-3, loss_tolerance: float = 1e-5,
) -> SearchResult:
    """Minimize `loss` from `x0`; the initial simplex puts one vertex `step` along each axis.
    Stops when the simplex is smaller than `x_tolerance` in every coordinate and the losses at its
    vertices agree within `loss_tolerance`, or after `max_evaluations`."""
    x0 = np.asarray(x0, dtype=float)
    n = x0.size
    steps = np.broadcast_to(np.asarray(step, dtype=float), (n,))
    simplex = np.vstack([x0] + [x0 + np.eye(n)[i] * steps[i] for i in range(n)])
    values = np.array([loss(v) for v in simplex])
    evaluations = n + 1
    converged = False
    while evaluations < max_evaluations:
        order = np.argsort(values)
        simplex, values = simplex[order], values[order]
        if (np.max(np.abs(simplex[1:] - simplex[0])) <= x_tolerance
                and values[-1] - values[0] <= loss_tolerance):  # fmt: skip
            converged = True
            break
        centroid = simplex[:-1].mean(axis=0)
        worst = simplex[-1]
        reflected = centroid + (centroid - worst)
        f_reflected = loss(reflected)
        evaluations += 1
        if f_reflected < values[0]:
            expanded = centroid + 2.0 * (centroid - worst)
            f_expanded = loss(expanded)
            evaluations += 1
            if f_expanded < f_reflected:
                simplex[-1], values[-1] = expanded, f_expanded
            else:
                simplex[-1], values[-1] = reflected, f_reflected
            continue
        if f_reflected < values[-2]:
            simplex[-1], values[-1] = reflected, f_reflected
            continue
        # Contract towards the better of the worst and its reflection.
        if f_reflected < values[-1]:
            contracted = centroid + 0.5 * (reflected - centroid)
        else:
            contracted = centroid + 0.5 * (worst - centroid)
        f_contracted = loss(contracted)
        evaluations += 1
        if f_contracted < min(f_reflected, values[-1]):
            simplex[-1], values[-1] = contracted, f_contracted
            continue
        # Nothing helped: shrink everything towards the best vertex.
        for i in range(1, n + 1):
            simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
            values[i] = loss(simplex[i])
        evaluations += n
    best = int(np.argmin(values))
    return SearchResult(x=simplex[best].copy(), loss=float(values[best]), evaluations=evaluations, converged=converged)

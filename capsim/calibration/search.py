"""A derivative-free minimizer (Nelder–Mead) for objectives evaluated by simulation.

The black-box fit minimizes a loss that is only available by running the simulator, so there is
no gradient; with common random numbers (a fixed seed) the loss is a deterministic, piecewise
smooth function of the parameters, which is what Nelder–Mead handles well. The method is scipy's
(`scipy.optimize.minimize(method="Nelder-Mead")`, standard coefficients: reflection 1, expansion 2,
contraction 1/2, shrink 1/2); scipy comes with the `loadtest` extra, which calibration needs anyway
to read run folders, and is imported only when a fit runs.
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
    vertices agree within `loss_tolerance` (`converged`), or after about `max_evaluations` (a
    shrink step in progress finishes, so the count may pass it by up to the dimension)."""
    from scipy.optimize import minimize

    x0 = np.asarray(x0, dtype=float)
    n = x0.size
    steps = np.broadcast_to(np.asarray(step, dtype=float), (n,))
    simplex = np.vstack([x0] + [x0 + np.eye(n)[i] * steps[i] for i in range(n)])
    result = minimize(
        lambda x: float(loss(x)), x0, method="Nelder-Mead",
        options={"initial_simplex": simplex, "maxfev": max_evaluations, "xatol": x_tolerance,
                 "fatol": loss_tolerance},
    )  # fmt: skip
    return SearchResult(x=np.asarray(result.x, dtype=float).copy(), loss=float(result.fun),
                        evaluations=int(result.nfev), converged=bool(result.success))  # fmt: skip

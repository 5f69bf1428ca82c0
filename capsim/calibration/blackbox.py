"""Black-box calibration: the service curve and fixed overhead that best reproduce measured latency.

For a deployment capsim cannot look inside (no batch log, no server timing headers), the only data
are the client's latencies at a few loads. The fit assumes the first-order shape of batched
inference — a batch of k takes `base_ms + per_item_ms × k`, lognormal around that mean with
coefficient of variation `cv` — plus a fixed `overhead_ms` per request outside the batcher (network,
serialization), and searches (Nelder–Mead, in log space, so every parameter stays positive) for the
four numbers whose replays through the simulator match the measured p50, p90 and p99 latency and the
throughput of every fit point best. The loss is the mean squared log ratio simulated / measured, so
each point and percentile counts by its relative error. Replays use one fixed seed (common random
numbers), which keeps the loss deterministic for the search.

Load levels are what separate the parameters: at light load latency is overhead + service, under
load the queueing delay grows with the service time alone, and larger batches expose the per-item
slope. With `max_batch_size` 1 everywhere the slope cannot be seen and is fixed at 0.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from capsim.calibration.compare import measured_stats, simulated_stats
from capsim.calibration.replay import ReplayWorkspace, arrival_trace, replay
from capsim.calibration.runfolder import LoadPoint, require_server
from capsim.calibration.search import nelder_mead
from capsim.errors import CapsimInputError
from capsim.servicetime import Profile
from capsim.servicetime.base import lognormal_params
from capsim.servicetime.profile_format import DEFAULT_QUANTILE_LEVELS

# The whole body of the distribution, not just its tail: at light load the spread between p10 and
# p75 is the service time's own spread (the overhead shifts, it does not widen), which separates the
# service time from the overhead; the upper percentiles carry the queueing.
FIT_PERCENTILES = ("p10", "p25", "p50", "p75", "p90", "p99")
_FAILED_LOSS = 1e3  # a replay with no completed request in the window is as bad as it gets
# The profile stands for an unbounded lognormal: its levels 0 and 1 take these quantiles instead.
_TAIL_LEVEL = 1e-6
_RESTART_STEPS = (0.7, 0.3, 0.1)  # initial simplex sizes (log space) of the search and its restarts


@dataclass(frozen=True)
class LinearFit:
    """Fitted batch service curve (`base_ms + per_item_ms × k`, lognormal with `cv`) and overhead."""

    base_ms: float
    per_item_ms: float
    cv: float
    overhead_ms: float

    def service(self) -> dict[str, Any]:
        """The scenario `service:` mapping of the curve."""
        return {"kind": "linear", "base_ms": self.base_ms, "per_item_ms": self.per_item_ms, "cv": self.cv}


@dataclass
class BlackBoxFit:
    """The fitted parameters and how the search went."""

    params: LinearFit
    loss: float
    evaluations: int
    converged: bool
    slope_fixed: bool

    def as_dict(self) -> dict[str, Any]:
        """For provenance."""
        return {"parameters": asdict(self.params), "loss": self.loss, "evaluations": self.evaluations,
                "converged": self.converged, "per_item_fixed_at_zero": self.slope_fixed}  # fmt: skip


def _log_ratio(simulated: float | None, measured: float | None) -> float:
    if simulated is None or measured is None or simulated <= 0 or measured <= 0:
        return math.sqrt(_FAILED_LOSS)
    return math.log(simulated / measured)


def point_loss(measured: dict[str, Any], simulated: dict[str, Any]) -> float:
    """Mean squared log ratio over the FIT_PERCENTILES of latency and the throughput."""
    terms = [_log_ratio(simulated["latency_ms"][k], measured["latency_ms"][k]) for k in FIT_PERCENTILES]
    terms.append(_log_ratio(simulated["throughput_rps"], measured["throughput_rps"]))
    return float(np.mean(np.square(terms)))


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _light_latency_ms(measured: list[dict[str, Any]], points: list[LoadPoint]) -> float:
    """The lightest load's median latency less the batching window (a lone request waits it out)."""
    light = [(m["latency_ms"]["p50"], require_server(p).max_wait_ms) for m, p in zip(measured, points, strict=True)
             if m["latency_ms"]["p50"]]  # fmt: skip
    if not light:
        raise CapsimInputError("no completed request in any fit point: nothing to fit", field="RUN_DIR")
    p50_ms, window_ms = min(light)
    return max(p50_ms - window_ms, 0.5 * p50_ms)


def fit_black_box(
    points: list[LoadPoint], workspace: ReplayWorkspace, *, max_evaluations: int = 150, seed: int = 0,
    replications: int = 2,
) -> BlackBoxFit:
    """Search for the LinearFit whose replays of `points` match their measured latency best.

    The search runs in coordinates that follow the data's own structure, so that the valley the
    loss forms (light-load latency pins overhead + service time of one request, not their split) lies
    along an axis: x = (log of overhead + batch-of-1 time, logit of the overhead's share of it,
    log cv, logit of the per-item share of the batch-of-1 time)."""
    for point in points:
        require_server(point)
    measured = [measured_stats(p) for p in points]
    traces = [arrival_trace(p, workspace) for p in points]
    batching = any(require_server(p).max_batch_size > 1 for p in points)

    def unpack(x: np.ndarray) -> LinearFit:
        total_ms = math.exp(x[0])
        overhead_ms = _sigmoid(x[1]) * total_ms
        one_ms = total_ms - overhead_ms  # service time of a batch of one
        per_item_ms = _sigmoid(x[3]) * one_ms if batching else 0.0
        return LinearFit(base_ms=one_ms - per_item_ms, per_item_ms=per_item_ms, cv=min(math.exp(x[2]), 5.0),
                         overhead_ms=overhead_ms)

    def loss(x: np.ndarray) -> float:
        params = unpack(x)
        total = 0.0
        for point, m, trace in zip(points, measured, traces, strict=True):
            sim = replay(point, params.service(), params.overhead_ms, workspace, seed=seed,
                         replications=replications, trace=trace)
            total += point_loss(m, simulated_stats(point, sim))
        return total / len(points)

    # Start: a third of the light-load latency outside the server, a fifth of a batch of one per item.
    x0 = [math.log(_light_latency_ms(measured, points)), _logit(0.3), math.log(0.3)]
    if batching:
        x0.append(_logit(0.2))
    # Nelder–Mead can collapse its simplex in a curved valley before reaching the bottom (the loss
    # is piecewise constant at the finest scale: batch compositions change in steps). Restarting
    # from the best vertex with fresh, smaller simplices is the standard remedy.
    x, evaluations, converged, best = np.array(x0), 0, False, math.inf
    for step in _RESTART_STEPS:
        budget = max_evaluations - evaluations
        if budget < len(x0) + 2:
            break
        result = nelder_mead(loss, x, step=step, max_evaluations=budget)
        evaluations += result.evaluations
        converged = result.converged
        if result.loss < best:
            x, best = result.x, result.loss
    return BlackBoxFit(params=unpack(x), loss=best, evaluations=evaluations, converged=converged,
                       slope_fixed=not batching)


def fit_batch_sizes(max_batch_size: int) -> list[int]:
    """Sizes the black-box profile tabulates: powers of two up to the largest batch, and the largest."""
    sizes, k = [], 1
    while k < max_batch_size:
        sizes.append(k)
        k *= 2
    sizes.append(max_batch_size)
    return sizes


def profile_from_linear(params: LinearFit, max_batch_size: int, requests_used: int, **metadata: Any) -> Profile:
    """The fitted curve as a `capsim-profile/1` table: at each size, the lognormal's quantiles (levels
    0 and 1 take the 1e-6 and 1 − 1e-6 quantiles, since the table must be finite). No batch was
    observed, so each point's `count` is the number of measured requests the fit used."""
    levels = list(DEFAULT_QUANTILE_LEVELS)
    normal = NormalDist()
    z = [normal.inv_cdf(min(max(level, _TAIL_LEVEL), 1.0 - _TAIL_LEVEL)) for level in levels]
    points = []
    for size in fit_batch_sizes(max_batch_size):
        mean_ms = params.base_ms + params.per_item_ms * size
        if params.cv > 0:
            mu, sigma = lognormal_params(mean_ms, params.cv)
            quantiles = [math.exp(mu + sigma * zi) for zi in z]
        else:
            quantiles = [mean_ms] * len(levels)
        points.append({"batch_size": size, "count": requests_used, "mean_ms": mean_ms, "quantiles_ms": quantiles})
    return Profile.model_validate({"quantile_levels": levels, "points": points, **metadata})

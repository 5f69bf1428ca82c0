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

FIT_PERCENTILES = ("p50", "p90", "p99")
_FAILED_LOSS = 1e3  # a replay with no completed request in the window is as bad as it gets
# The profile stands for an unbounded lognormal: its levels 0 and 1 take these quantiles instead.
_TAIL_LEVEL = 1e-6


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
    """Mean squared log ratio over p50, p90, p99 latency and throughput."""
    terms = [_log_ratio(simulated["latency_ms"][k], measured["latency_ms"][k]) for k in FIT_PERCENTILES]
    terms.append(_log_ratio(simulated["throughput_rps"], measured["throughput_rps"]))
    return float(np.mean(np.square(terms)))


def _initial_guess(measured: list[dict[str, Any]], batching: bool) -> LinearFit:
    """From the lightest load's median: most of it service, some overhead, a tenth per item."""
    p50s = [m["latency_ms"]["p50"] for m in measured if m["latency_ms"]["p50"]]
    if not p50s:
        raise CapsimInputError("no completed request in any fit point: nothing to fit", field="RUN_DIR")
    light = min(p50s)
    return LinearFit(base_ms=0.5 * light, per_item_ms=0.1 * light if batching else 0.0, cv=0.3,
                     overhead_ms=0.3 * light)


def fit_black_box(
    points: list[LoadPoint], workspace: ReplayWorkspace, *, max_evaluations: int = 150, seed: int = 0,
    replications: int = 1,
) -> BlackBoxFit:
    """Search for the LinearFit whose replays of `points` match their measured latency best."""
    for point in points:
        require_server(point)
    measured = [measured_stats(p) for p in points]
    traces = [arrival_trace(p, workspace) for p in points]
    batching = any(require_server(p).max_batch_size > 1 for p in points)
    start = _initial_guess(measured, batching)

    def unpack(x: np.ndarray) -> LinearFit:
        per_item = math.exp(x[3]) if batching else 0.0
        return LinearFit(base_ms=math.exp(x[0]), cv=min(math.exp(x[1]), 5.0), overhead_ms=math.exp(x[2]),
                         per_item_ms=per_item)

    def loss(x: np.ndarray) -> float:
        params = unpack(x)
        total = 0.0
        for point, m, trace in zip(points, measured, traces, strict=True):
            sim = replay(point, params.service(), params.overhead_ms, workspace, seed=seed,
                         replications=replications, trace=trace)
            total += point_loss(m, simulated_stats(point, sim))
        return total / len(points)

    x0 = [math.log(start.base_ms), math.log(start.cv), math.log(start.overhead_ms)]
    if batching:
        x0.append(math.log(start.per_item_ms))
    result = nelder_mead(loss, np.array(x0), step=0.7, max_evaluations=max_evaluations)
    return BlackBoxFit(params=unpack(result.x), loss=result.loss, evaluations=result.evaluations,
                       converged=result.converged, slope_fixed=not batching)


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

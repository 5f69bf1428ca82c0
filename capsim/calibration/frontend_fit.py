"""White-box fit of the server's front end (`serving.frontend`) from the batch log's queue-entry times.

The reference server parses every request on one Python event loop before putting it on the
batcher's queue, and logs when each request joined that queue (`batches.parquet`, `arrival_s`, one
list per batch). With the client's send instant (`sent_s`, same host and clock on loopback) that
splits the time outside the batcher into

* **pre** = queue entry − send: the network hop in (a constant floor), then waiting for the event
  loop plus its work on the request — what `serving.frontend` models as a FIFO queue of `workers`
  servers;
* **post** = latency − pre − X-Queue-Ms − X-Compute-Ms: response hand-back and the network out.

The replay's constant `overhead_ms` is the floor plus the median post at the lightest fit load (a
constant delay before a FIFO queue changes no wait, so it can be added anywhere).

One event loop is one server (`workers: 1`). For a single FIFO server the time it spent on request
*i* is recovered exactly from arrivals *A* and departures *D*: `S_i = D_i − max(A_i, D_{i−1})`
(Lindley's recursion read backwards). Those S include the loop's other work done while the request
waited its turn (writing earlier responses, the batching timer), which is what limits its capacity.
Their pooled mean and coefficient of variation are the *moment* estimate. The measured S are not
independent, though: the loop stalls now and then (the executor thread holding the GIL, garbage
collection) and a stall delays a burst of requests at once, which independent lognormal draws with
the same moments spread over many requests (too much median wait, too little tail). So the fit keeps
the model the simulator has — one FIFO server, i.i.d. lognormal times — and chooses its mean and cv
to reproduce the measured pre-queue times: every fit point's send instants, delayed by the floor, go
through the same FIFO server (vectorized Lindley recursion, common random numbers) on a grid of
(floor, mean, cv) — floor 0, ½ or all of the least pre-queue time (at light load a constant network
hop and a constant front-end time look alike; only queueing at higher loads tells them apart),
mean 0.3–1.25× the moment estimate, cv 0 or 0.25–6 — and the triple with the least mean squared
log ratio of the p50, p90 and p99 of pre wins. Requests are matched to queue entries by order (a
FIFO front end keeps it); a point whose counts differ (requests lost before the queue) is skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from capsim.calibration.mechanism import ERROR_PERCENTILES, Mechanism, quantile_log_error
from capsim.calibration.runfolder import LoadPoint

REFERENCE_SERVER_WORKERS = 1  # one asyncio event loop holding the GIL
_MEAN_FACTORS = np.geomspace(0.3, 1.25, 14)  # × the moment estimate of the mean (floor 0)
_CVS = np.concatenate([[0.0], np.geomspace(0.25, 6.0, 14)])
_REFINE_MEAN = np.geomspace(0.9, 1.1, 9)
_REFINE_CV = np.geomspace(0.8, 1.25, 7)
_FLOOR_SHARES = (0.0, 0.5, 1.0)  # × the least pre-queue time (1st percentile)
_FIT_SEED = 20261122
_NONE_MS = 1e-3  # a mean front-end time below a microsecond is clock noise, not a front end


@dataclass(frozen=True)
class FrontEndSplit:
    """Per completed measured request of one point: time before the queue (pre), front-end service
    time recovered from the FIFO recursion with no floor, and the rest outside the server (post)."""

    pre_ms: np.ndarray
    service_ms: np.ndarray
    post_ms: np.ndarray
    sent_s: np.ndarray  # every completed request's send instant (the FIFO server's arrivals)
    measured: np.ndarray  # which of them are measured (the arrays above hold only those)


@dataclass(frozen=True)
class FrontEndEstimate:
    """The fitted `serving.frontend` and the constant overhead left outside it."""

    workers: int
    per_request_ms: float
    cv: float
    overhead_ms: float
    network_floor_ms: float
    moments: dict[str, float]
    loss: float
    requests: int
    lightest: str
    per_point: dict[str, dict[str, float]]

    def spec(self) -> dict[str, float | int]:
        """The `serving.frontend` mapping a scenario takes."""
        return {"workers": self.workers, "per_request_ms": self.per_request_ms, "cv": self.cv}

    def scenario_patch(self) -> dict[str, Any]:
        """The front end and the constant overhead left outside it."""
        return {"frontend": self.spec(), "overhead_ms": self.overhead_ms}

    def describe(self) -> str:
        """The fitted front end in one line."""
        return (f"front end: {self.workers} worker(s), {self.per_request_ms:.3f} ms/request (cv {self.cv:.2f}; "
                f"{self.workers * 1000.0 / self.per_request_ms:.0f} req/s at most), "
                f"overhead outside it {self.overhead_ms:.3f} ms")

    def error(self, points: list[LoadPoint]) -> float | None:
        """The fit's loss on `points`: pre-queue percentiles through this front end against the
        measured ones (None when no point has matching queue-entry times)."""
        splits = [s for _, s in _usable(points)]
        if not splits:
            return None
        return pre_queue_error(splits, self.network_floor_ms, self.per_request_ms, self.cv)

    def as_dict(self) -> dict[str, object]:
        """For provenance."""
        return {**self.spec(), "overhead_ms": self.overhead_ms, "network_floor_ms": self.network_floor_ms,
                "moments": self.moments, "loss": self.loss, "requests": self.requests,
                "overhead_from_point": self.lightest, "per_point": self.per_point}  # fmt: skip


def describe_frontend(spec: dict[str, object]) -> str:
    """A `serving.frontend` mapping in one short line: the late window's quantile table (1001
    numbers when calibrated) as its count, median and p90 rather than in full."""
    quantiles = spec.get("window_late_quantiles_ms")
    shown = {k: v for k, v in spec.items() if k != "window_late_quantiles_ms"}
    text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items())
    if isinstance(quantiles, list) and quantiles:
        values = np.asarray(quantiles, dtype=float)
        grid = np.linspace(0.0, 1.0, values.size)
        median_ms, p90_ms = np.interp([0.5, 0.9], grid, values)
        text += (f"; batching timer late by {median_ms:.3f} ms median, {p90_ms:.3f} ms p90 "
                 f"(window_late_quantiles_ms: {values.size} quantiles)")
    return text


def queue_entries_s(point: LoadPoint) -> np.ndarray | None:
    """When each 2xx request of `point` joined the batcher's queue (epoch seconds, in row order of
    the 2xx rows), from the batch log's queue-entry times matched to the requests by order (a FIFO
    front end keeps it); None when the log has no such times, the counts differ, or the client's
    clock is not the server's (entries before the sends: a client on another host)."""
    batches, rows = point.batches, point.requests
    if batches is None or "arrival_s" not in batches.columns or \
            not {"server_queue_ms", "server_compute_ms"} <= set(rows.columns):
        return None
    if "error" in batches.columns:
        batches = batches[batches["error"].isna()]
    parts = [np.asarray(a, dtype=float) for a in batches["arrival_s"] if a is not None and len(a)]
    if not parts:
        return None
    entered_s = np.sort(np.concatenate(parts))
    ok = rows["status"].to_numpy() // 100 == 2
    if entered_s.size != np.count_nonzero(ok):
        return None
    sent_s = rows["sent_s"].to_numpy(dtype=float)[ok]  # rows are sorted by send time (runfolder.py)
    return entered_s if np.median(entered_s - sent_s) >= 0 else None


def split_point(point: LoadPoint) -> FrontEndSplit | None:
    """Pre / service / post per completed measured request of `point`; None when the batch log has
    no queue-entry times or they cannot be matched to the requests one for one."""
    entered_s = queue_entries_s(point)
    if entered_s is None:
        return None
    rows = point.requests
    ok = rows["status"].to_numpy() // 100 == 2
    sent_s = rows["sent_s"].to_numpy(dtype=float)[ok]  # rows are sorted by send time (runfolder.py)
    previous_s = np.concatenate([[-np.inf], entered_s[:-1]])
    service_ms = (entered_s - np.maximum(sent_s, previous_s)) * 1000.0
    pre_ms = (entered_s - sent_s) * 1000.0
    post_ms = (rows["latency_ms"] - rows["server_queue_ms"] - rows["server_compute_ms"]).to_numpy(dtype=float)[ok]
    post_ms = post_ms - pre_ms
    measured = point.measured_mask()[ok] & np.isfinite(post_ms)
    return FrontEndSplit(pre_ms[measured], service_ms[measured], post_ms[measured], sent_s, measured)


def fifo_departures_s(arrival_s: np.ndarray, service_s: np.ndarray) -> np.ndarray:
    """Departures from one FIFO server: D_i = max(A_i, D_{i−1}) + S_i, unrolled as
    D_i = C_i + max_{j≤i}(A_j − C_{j−1}) with C the running sum of S (no Python loop)."""
    total_s = np.cumsum(service_s)
    return total_s + np.maximum.accumulate(arrival_s - (total_s - service_s))


def _pre_percentiles_ms(
    split: FrontEndSplit, normal: np.ndarray, mean_ms: float, cv: float, floor_ms: float,
) -> np.ndarray:  # fmt: skip
    sigma = np.sqrt(np.log1p(cv * cv))
    service_s = np.exp(np.log(mean_ms / 1000.0) - sigma * sigma / 2 + sigma * normal)
    arrival_s = split.sent_s + floor_ms / 1000.0
    pre_ms = floor_ms + (fifo_departures_s(arrival_s, service_s) - arrival_s)[split.measured] * 1000.0
    return np.percentile(pre_ms, ERROR_PERCENTILES)


def _loss_function(splits: list[FrontEndSplit]) -> Callable[[float, float, float], float]:
    """loss(floor ms, mean ms, cv): `quantile_log_error` of the pre-queue times through that front
    end, averaged over the points; the same normal draws (common random numbers) at every call."""
    rng = np.random.default_rng(_FIT_SEED)
    normals = [rng.standard_normal(s.sent_s.size) for s in splits]
    measured = [np.percentile(s.pre_ms, ERROR_PERCENTILES) for s in splits]

    def loss(floor_ms: float, mean_ms: float, cv: float) -> float:
        return float(np.mean([quantile_log_error(_pre_percentiles_ms(s, z, mean_ms, cv, floor_ms), target)
                              for s, z, target in zip(splits, normals, measured, strict=True)]))  # fmt: skip

    return loss


def pre_queue_error(splits: list[FrontEndSplit], floor_ms: float, mean_ms: float, cv: float) -> float:
    """The fit's loss of one front end (network floor, mean, cv) on `splits`."""
    return _loss_function(splits)(floor_ms, mean_ms, cv)


def fit_front_end(splits: list[FrontEndSplit], moment_mean_ms: float) -> tuple[float, float, float, float]:
    """(floor ms, mean ms, cv, loss) of the network floor plus i.i.d. lognormal FIFO server whose
    pre-queue times best match the measured ones at every point (see the module docstring)."""
    loss_of = _loss_function(splits)
    least_ms = max(float(np.percentile(np.concatenate([s.pre_ms for s in splits]), 1)), 0.0)

    best = (0.0, moment_mean_ms, 0.0, np.inf)
    for share in _FLOOR_SHARES:
        for factor in _MEAN_FACTORS:
            for cv in _CVS:
                loss = loss_of(share * least_ms, float(moment_mean_ms * factor), float(cv))
                if loss < best[3]:
                    best = (share * least_ms, float(moment_mean_ms * factor), float(cv), loss)
    # A finer pass around the best grid point: the coarse grid's steps are ~11% in the mean.
    floor_ms, coarse_mean_ms, coarse_cv = best[:3]
    for factor in _REFINE_MEAN:
        for scale in _REFINE_CV if coarse_cv > 0 else (1.0,):
            loss = loss_of(floor_ms, float(coarse_mean_ms * factor), float(coarse_cv * scale))
            if loss < best[3]:
                best = (floor_ms, float(coarse_mean_ms * factor), float(coarse_cv * scale), loss)
    return best


def _usable(points: list[LoadPoint]) -> list[tuple[LoadPoint, FrontEndSplit]]:
    return [(point, s) for point in points if (s := split_point(point)) is not None and s.service_ms.size]


def frontend_estimate(points: list[LoadPoint]) -> FrontEndEstimate | None:
    """The front end fitted from `points` (see the module docstring); None when no point allows it."""
    usable = _usable(points)
    if not usable:
        return None
    service_ms = np.concatenate([s.service_ms for _, s in usable])
    moment_mean_ms = float(service_ms.mean())
    if moment_mean_ms < _NONE_MS:  # requests reach the queue the instant they are sent: no front end to fit
        return None
    moment_cv = float(service_ms.std() / moment_mean_ms)
    floor_ms, mean_ms, cv, loss = fit_front_end([s for _, s in usable], moment_mean_ms)
    per_point = {point.label: {
        "rate_rps": float(point.rate_rps or 0.0), "requests": int(s.service_ms.size),
        "service_mean_ms": float(s.service_ms.mean()), "pre_p50_ms": float(np.median(s.pre_ms)),
        "pre_p99_ms": float(np.percentile(s.pre_ms, 99)), "post_p50_ms": float(np.median(s.post_ms)),
        # the fitted front end's busy share at this load: how close to saturation it ran
        "busy": float(s.service_ms.size * mean_ms / 1000.0 / max(point.duration_s - point.warmup_s, 1e-9)),
    } for point, s in usable}  # fmt: skip
    lightest, split = min(usable, key=lambda ps: (ps[0].rate_rps or 0.0, ps[0].label))
    # clock resolution can make the post part slightly negative
    overhead_ms = floor_ms + max(float(np.median(split.post_ms)), 0.0)
    return FrontEndEstimate(REFERENCE_SERVER_WORKERS, mean_ms, cv, overhead_ms, floor_ms,
                            {"per_request_ms": moment_mean_ms, "cv": moment_cv}, loss, int(service_ms.size),
                            lightest.label, per_point)


MECHANISM = Mechanism(
    name="frontend",
    title="the front end",
    fit=frontend_estimate,
    default=True,
    unfitted="the batch log has no queue-entry times matching the requests one for one, so the front end was not "
             "fitted; the overhead is a constant",
)  # fmt: skip

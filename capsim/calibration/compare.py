"""Measured vs simulated: the same statistics computed the same way on both sides, and their errors.

Both sides are summarized over the same requests — those the load tester counts as measured (intended
send in the measured interval) — with the same code:

* latency (ms): response − actual send, completed requests; mean, p10, p25, p50, p75, p90, p99;
* throughput (req/s): responses that arrive inside the measured interval, per second of it (the load
  tester's definition);
* queue wait (ms): the same span on both sides, named in the comparison's `queue_wait_basis`:
  - `send → batch start` (preferred; docs/model.md's `queue_wait_ms`, arrival → batch start, with the
    arrival at the send instant the replay uses): the server's front end plus the batcher's queue.
    Measured: batch-log queue entry − send + `X-Queue-Ms`; simulated: batch start − arrival, plus the
    network hop in that the replay folds into its constant overhead (`in_hop_ms`);
  - `queue entry → batch start` (the batcher's queue alone, when the batch log has no queue-entry
    times and the replay has no front end): measured `X-Queue-Ms`; simulated batch start − arrival
    (without a front end a request joins the queue on arrival);
  - none otherwise: `X-Queue-Ms` leaves out the front end the simulated figure would include, and
    comparing the two read +1934% on a server whose front end queued;
* batch sizes: per batch, from each request's batch size (`X-Batch-Size`), bucketed by powers of two;
* rejected / timed out counts.

Relative error = (simulated − measured) / measured.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.calibration.frontend_fit import queue_entries_s
from capsim.calibration.replay import SimulatedRequests
from capsim.calibration.runfolder import LoadPoint
from capsim.metrics.request_log import REJECTED, TIMED_OUT

PERCENTILES = {"p10": 10.0, "p25": 25.0, "p50": 50.0, "p75": 75.0, "p90": 90.0, "p99": 99.0}
# The figures whose relative error is reported (dotted paths into a stats dict).
ERROR_KEYS = ("throughput_rps", "latency_ms.p50", "latency_ms.p90", "latency_ms.p99", "latency_ms.mean",
              "queue_wait_ms.p50", "queue_wait_ms.p99", "batch_size.mean")  # fmt: skip


def _bucket_edges(max_size: int) -> list[int]:
    edges, top = [1], 1
    while top < max_size:
        top *= 2
        edges.append(top)
    return edges


def bucket_label(lo: int, hi: int) -> str:
    """`"1"`, `"2"`, `"3-4"`, `"5-8"`, … the batch-size buckets of the distribution."""
    return str(hi) if lo == hi else f"{lo}-{hi}"


def batch_distribution(request_batch_sizes: np.ndarray, max_size: int) -> dict[str, float]:
    """Share of *batches* per size bucket, from each request's batch size (a batch of k shows up in k
    requests, so a size's batch count is its request count / k)."""
    sizes = request_batch_sizes[request_batch_sizes > 0].astype(np.int64)
    out: dict[str, float] = {}
    if sizes.size == 0:
        return out
    # Per distinct size, not a dense array up to max_size: a manifest's max_batch_size of 10^12 must
    # not allocate 8 TB (the buckets are powers of two, so there are only log2(max_size) of them).
    distinct, counts = np.unique(sizes, return_counts=True)
    batches = counts / distinct
    total = batches.sum()
    edges = _bucket_edges(max(max_size, int(distinct[-1])))
    per_bucket = np.bincount(np.searchsorted(edges, distinct, side="left"), weights=batches, minlength=len(edges))
    lo = 1
    for hi, share in zip(edges, per_bucket, strict=True):
        out[bucket_label(lo, hi)] = float(share / total)
        lo = hi + 1
    return out


SEND_TO_BATCH = "send → batch start"
"""Queue wait from the request's send: the server's front end plus the batcher's queue."""
QUEUE_TO_BATCH = "queue entry → batch start"
"""Queue wait in the batcher's queue alone (`X-Queue-Ms`)."""


def queue_wait_basis(point: LoadPoint, frontend_replayed: bool) -> str | None:
    """The queue-wait span both sides can give for `point` (module docstring); None when none."""
    if queue_entries_s(point) is not None:
        return SEND_TO_BATCH
    if not frontend_replayed and "server_queue_ms" in point.requests.columns:
        return QUEUE_TO_BATCH
    return None


def _measured_queue_wait_ms(point: LoadPoint, completed: np.ndarray, basis: str | None) -> np.ndarray | None:
    """Per completed request, the measured queue wait on `basis` (None when a request lacks it)."""
    rows = point.requests
    if basis is None or "server_queue_ms" not in rows.columns:
        return None
    queue_ms = rows["server_queue_ms"].to_numpy(dtype=float)
    if basis == SEND_TO_BATCH:
        entered_s = queue_entries_s(point)
        if entered_s is None:
            return None
        answered = rows["status"].to_numpy() // 100 == 2  # the rows queue_entries_s matched
        before_ms = np.full(len(rows), np.nan)
        before_ms[answered] = (entered_s - rows["sent_s"].to_numpy(dtype=float)[answered]) * 1000.0
        queue_ms = before_ms + queue_ms
    values = queue_ms[completed]
    return values if np.isfinite(values).all() else None


def _summary(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return {"mean": None, **{k: None for k in PERCENTILES}}
    result: dict[str, float | None] = {"mean": float(values.mean())}
    for key, pct in PERCENTILES.items():
        result[key] = float(np.percentile(values, pct))
    return result


def _stats(
    window: tuple[float, float], latency_ms: np.ndarray, response_s: np.ndarray, queue_ms: np.ndarray | None,
    batch_sizes: np.ndarray | None, rejected: int, timed_out: int, max_batch: int, replications: int,
    utilization: float | None,
) -> dict[str, Any]:
    lo, hi = window
    inside = (response_s >= lo) & (response_s < hi)
    mean_batch = None
    distribution: dict[str, float] = {}
    if batch_sizes is not None and batch_sizes.size and (batch_sizes > 0).any():
        sizes = batch_sizes[batch_sizes > 0].astype(float)
        mean_batch = float(sizes.size / np.sum(1.0 / sizes))  # per batch, not per request
        distribution = batch_distribution(batch_sizes, max_batch)
    return {
        "completed": int(latency_ms.size / replications),
        "rejected": round(rejected / replications),
        "timed_out": round(timed_out / replications),
        "throughput_rps": float(np.count_nonzero(inside) / replications / (hi - lo)),
        "latency_ms": _summary(latency_ms),
        "queue_wait_ms": _summary(queue_ms) if queue_ms is not None else None,
        "batch_size": {"mean": mean_batch, "distribution": distribution} if mean_batch is not None else None,
        "utilization": utilization,
    }


def measured_stats(point: LoadPoint, queue_basis: str | None = None) -> dict[str, Any]:
    """The measured statistics of a load point (see the module docstring); queue wait on
    `queue_basis` (None: no queue wait)."""
    rows = point.requests
    measured = point.measured_mask()
    status = rows["status"].to_numpy()
    no_error = np.ones(len(rows), dtype=bool)
    if "error" in rows.columns:
        no_error = rows["error"].isna().to_numpy() | (rows["error"].fillna("x") == "").to_numpy()
    ok_rows = (status >= 200) & (status < 300) & no_error
    completed = measured & ok_rows
    latency_ms = rows["latency_ms"].to_numpy(dtype=float)
    response_s = rows["sent_s"].to_numpy(dtype=float) + latency_ms / 1000.0
    queue_ms = _measured_queue_wait_ms(point, completed, queue_basis)
    batch_sizes = None
    if "server_batch_size" in rows.columns and rows.loc[completed, "server_batch_size"].notna().all():
        batch_sizes = rows.loc[completed, "server_batch_size"].to_numpy(dtype=np.int64)
    utilization = None
    if point.batches is not None and len(point.batches) and point.server is not None:
        lo, hi = point.window_s
        start = point.batches["start_s"].to_numpy(dtype=float)
        end = point.batches["end_s"].to_numpy(dtype=float)
        busy_s = np.clip(np.minimum(end, hi) - np.maximum(start, lo), 0.0, None).sum()
        utilization = float(busy_s / ((hi - lo) * point.server.instances))
    max_batch = point.server.max_batch_size if point.server else int(batch_sizes.max()) if batch_sizes is not None \
        else 1
    return _stats(
        point.window_s, latency_ms[completed], response_s[ok_rows], queue_ms, batch_sizes,
        rejected=int(np.count_nonzero(measured & np.isin(status, (429, 503)))),
        timed_out=int(np.count_nonzero(measured & np.isin(status, (408, 504)))),
        max_batch=max_batch, replications=1, utilization=utilization,
    )


def simulated_stats(
    point: LoadPoint, sim: SimulatedRequests, queue_basis: str | None = None, in_hop_ms: float = 0.0,
) -> dict[str, Any]:
    """The same statistics of a replay (pooled over its replications); queue wait on `queue_basis`
    (None: none), with `in_hop_ms` of network before the server added on `SEND_TO_BATCH`."""
    n = len(point.requests)
    measured = np.tile(point.measured_mask(), sim.replications)
    assert measured.size == sim.arrival_s.size, (measured.size, sim.arrival_s.size, n)
    completed = measured & sim.completed
    latency_ms = (sim.end_s - sim.arrival_s) * 1000.0
    queue_ms = (sim.start_s - sim.arrival_s) * 1000.0 + (in_hop_ms if queue_basis == SEND_TO_BATCH else 0.0)
    max_batch = point.server.max_batch_size if point.server else int(sim.batch_size.max())
    return _stats(
        point.window_s, latency_ms[completed], sim.end_s[sim.completed],
        queue_ms[completed] if queue_basis is not None else None,
        sim.batch_size[completed], rejected=int(np.count_nonzero(measured & (sim.outcome == REJECTED))),
        timed_out=int(np.count_nonzero(measured & (sim.outcome == TIMED_OUT))), max_batch=max_batch,
        replications=sim.replications, utilization=sim.utilization,
    )


def _get(stats: dict[str, Any], dotted: str) -> float | None:
    node: Any = stats
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return float(node) if isinstance(node, int | float) else None


def relative_errors(measured: dict[str, Any], simulated: dict[str, Any]) -> dict[str, float | None]:
    """(simulated − measured) / measured for each of ERROR_KEYS (None where either side is missing)."""
    out: dict[str, float | None] = {}
    for key in ERROR_KEYS:
        m, s = _get(measured, key), _get(simulated, key)
        out[key] = (s - m) / m if m is not None and s is not None and m != 0 else None
    m_dist = (measured.get("batch_size") or {}).get("distribution") or {}
    s_dist = (simulated.get("batch_size") or {}).get("distribution") or {}
    if m_dist and s_dist:
        keys = set(m_dist) | set(s_dist)
        # Total variation distance: the share of batches that would have to change bucket.
        out["batch_size.distribution_tvd"] = 0.5 * sum(abs(m_dist.get(k, 0.0) - s_dist.get(k, 0.0)) for k in keys)
    else:
        out["batch_size.distribution_tvd"] = None
    return out


def compare_point(point: LoadPoint, sim: SimulatedRequests, in_hop_ms: float = 0.0) -> dict[str, Any]:
    """Measured and simulated statistics of one point, with relative errors; `in_hop_ms` is the
    network hop before the server that the replay adds to its constant overhead instead (the
    calibrated front end's `network_floor_ms`), put back before the batch start for the queue wait."""
    basis = queue_wait_basis(point, sim.frontend_replayed)
    measured = measured_stats(point, basis)
    if measured["queue_wait_ms"] is None:
        basis = None
    simulated = simulated_stats(point, sim, basis, in_hop_ms)
    return {"measured": measured, "simulated": simulated, "queue_wait_basis": basis,
            "relative_error": relative_errors(measured, simulated)}

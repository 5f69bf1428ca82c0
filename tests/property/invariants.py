"""Checks that must hold on every simulated run, request by request (docs/model.md's exact rules).

Times are compared with a small slack (EPS) for float rounding only: every rule below is exact in
the model, so any violation larger than rounding is a bug.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from capsim.engine import RunResult
from capsim.metrics.request_log import COMPLETED, IN_FLIGHT, REJECTED, TIMED_OUT, Columns
from capsim.scenario import Scenario

EPS = 1e-9
CLOCK_EPS = 1e-12  # rounding of `end - overhead` (times stay below ~100 s, whose ulp is 1.4e-14)
COUNT_KEYS = ("arrived", "completed", "rejected", "timed_out", "in_flight", "cache_hits")


def counts(cols: Columns, warmup_s: float) -> dict[str, int]:
    """The summary's request counts recomputed from the request log."""
    keep = cols["arrival_s"] >= warmup_s
    outcome = cols["outcome"][keep]
    return {
        "arrived": int(keep.sum()),
        "completed": int((outcome == COMPLETED).sum()),
        "rejected": int((outcome == REJECTED).sum()),
        "timed_out": int((outcome == TIMED_OUT).sum()),
        "in_flight": int((outcome == IN_FLIGHT).sum()),
        "cache_hits": int((cols["cache_hit"][keep] & (outcome == COMPLETED)).sum()),
    }


def check_conservation(result: RunResult) -> None:
    """arrived = completed + rejected + timed out + in flight: per replication, combined, and on the
    request log (whose counts must be the summary's)."""
    scenario = result.scenario
    totals = dict.fromkeys(COUNT_KEYS, 0)
    for rep in result.replications:
        req = rep.summary["requests"]
        assert req["arrived"] == req["completed"] + req["rejected"] + req["timed_out"] + req["in_flight"], req
        assert rep.requests is not None
        cols = rep.requests
        assert set(np.unique(cols["outcome"])) <= {IN_FLIGHT, COMPLETED, REJECTED, TIMED_OUT}
        assert cols["arrival_s"].size == sum(int((cols["outcome"] == o).sum()) for o in range(4))
        assert {k: req[k] for k in COUNT_KEYS} == counts(cols, scenario.warmup_s)
        for k in COUNT_KEYS:
            totals[k] += req[k]
    combined = result.summary["requests"]
    assert {k: combined[k] for k in COUNT_KEYS} == totals
    assert combined["arrived"] == (
        combined["completed"] + combined["rejected"] + combined["timed_out"] + combined["in_flight"]
    )


def check_levels(result: RunResult) -> None:
    """0 <= utilization <= 1, per replication and combined; busy executors never exceed the fleet."""
    serving = result.scenario.serving
    executors = serving.replicas * serving.instances_per_replica
    for rep in result.replications:
        u = rep.summary["utilization"]
        assert -1e-12 <= u <= 1 + 1e-9, u
        assert rep.summary["levels"]["busy_executors_mean"] <= executors * (1 + 1e-9)
        assert rep.summary["levels"]["queue_length_mean"] >= -1e-12
        # (absolute slack: over a window without requests both are rounding noise around 0)
        assert rep.summary["levels"]["in_service_mean"] >= rep.summary["levels"]["busy_executors_mean"] - 1e-9
        assert np.all(rep.timeseries["utilization"] <= 1 + 1e-9)
        # The time series are per-interval averages of the same levels: over the window they average
        # to the summary's figure.
        scenario = result.scenario
        ticks = rep.timeseries["time_s"]
        widths = np.diff(np.concatenate([[0.0], ticks]))
        window = (ticks > scenario.warmup_s) & (ticks <= scenario.duration_s)
        window_s = scenario.duration_s - scenario.warmup_s
        assert math.isclose(float(widths[window].sum()), window_s, rel_tol=1e-12)
        mean_u = float((rep.timeseries["utilization"][window] * widths[window]).sum()) / window_s
        assert math.isclose(mean_u, u, rel_tol=1e-9, abs_tol=1e-12), (mean_u, u)
    assert -1e-12 <= result.summary["utilization"] <= 1 + 1e-9


def check_request_columns(scenario: Scenario, cols: Columns) -> None:
    """Each outcome's columns are consistent; completed requests have arrival <= start <= end."""
    serving = scenario.serving
    overhead_s = serving.overhead_ms / 1000.0
    arrival, start, end = cols["arrival_s"], cols["start_s"], cols["end_s"]
    outcome, hit, size, replica = cols["outcome"], cols["cache_hit"], cols["batch_size"], cols["replica"]
    assert np.all(np.diff(arrival) >= 0), "request ids follow arrival order"
    assert np.all((arrival >= 0) & (arrival < scenario.duration_s))

    done = outcome == COMPLETED
    assert np.all(np.isfinite(start[done]) & np.isfinite(end[done]))
    assert np.all(start[done] >= arrival[done]), "a request started before it arrived"
    assert np.all(end[done] >= start[done]), "a request ended before it started"

    served = done & ~hit
    assert np.all(end[served] >= start[served] + overhead_s - EPS), "response faster than the overhead"
    assert np.all((size[served] >= 1) & (size[served] <= serving.batching.max_batch_size)), "batch size out of range"
    assert np.all((replica[served] >= 0) & (replica[served] < serving.replicas))

    # Cache hits are answered at once, without the model.
    if serving.cache.hit_ratio == 0:
        assert not hit.any()
    assert np.all(done[hit]), "a cache hit must complete"
    np.testing.assert_array_equal(start[hit], arrival[hit])
    cache_s = (serving.cache.latency_ms + serving.overhead_ms) / 1000
    np.testing.assert_allclose(end[hit] - arrival[hit], cache_s, rtol=0, atol=EPS)
    assert np.all(size[hit] == 0)

    rejected = outcome == REJECTED
    if serving.queue_capacity is None:
        assert not rejected.any(), "rejected without a queue capacity"
    assert np.all(np.isnan(start[rejected])) and np.all(end[rejected] == arrival[rejected])

    timed_out = outcome == TIMED_OUT
    if serving.timeout_ms is None:
        assert not timed_out.any(), "timed out without a timeout"
    else:
        timeout_s = serving.timeout_ms / 1000.0
        # A request never waits past its deadline: served ones start by then, the others leave at it.
        assert np.all(start[served] - arrival[served] <= timeout_s + EPS), "served after waiting past timeout_ms"
        assert np.all(np.isnan(start[timed_out]))
        np.testing.assert_allclose(end[timed_out] - arrival[timed_out], timeout_s, rtol=0, atol=EPS)

    in_flight = outcome == IN_FLIGHT
    assert np.all(np.isnan(end[in_flight]))
    assert not (in_flight & hit).any()


def _batches(cols: Columns, overhead_s: float) -> dict[str, np.ndarray]:
    """One row per batch of served (or still in service) requests: replica, start, model end (inf
    while still in service at the end of the run), size, and the arrivals of its oldest and youngest
    requests.

    Requests of one batch share (replica, start, end, size); two batches can share them too (two
    executors starting together on equal service times), so a group holds a multiple of the size."""
    started = np.isfinite(cols["start_s"]) & ~cols["cache_hit"]
    replica = cols["replica"][started]
    start = cols["start_s"][started]
    end = np.where(np.isnan(cols["end_s"][started]), np.inf, cols["end_s"][started] - overhead_s)
    size = cols["batch_size"][started]
    arrival = cols["arrival_s"][started]
    keys = np.stack([replica.astype(float), start, end, size.astype(float)], axis=1)
    unique, inverse, group_counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    assert np.all(group_counts % unique[:, 3].astype(int) == 0), "a batch's members do not match its size"
    # Requests join batches in arrival order: a group's members are its batches' members, so its
    # oldest is the oldest of its first batch.
    oldest = np.full(unique.shape[0], np.inf)
    np.minimum.at(oldest, inverse, arrival)
    youngest = np.full(unique.shape[0], -np.inf)
    np.maximum.at(youngest, inverse, arrival)
    repeat = group_counts // unique[:, 3].astype(int)
    return {
        "replica": np.repeat(unique[:, 0].astype(int), repeat),
        "start": np.repeat(unique[:, 1], repeat),
        "end": np.repeat(unique[:, 2], repeat),
        "size": np.repeat(unique[:, 3].astype(int), repeat),
        "oldest": np.repeat(oldest, repeat),
        "youngest": np.repeat(youngest, repeat),
    }


def _busy(batches: dict[str, np.ndarray], replica: int, t: np.ndarray) -> np.ndarray:
    """Executors of `replica` busy at each time in t. Batches cover [start, end), both shifted
    CLOCK_EPS early: the end is the logged end minus the overhead, which may round a hair past the
    instant the executor freed, and a t on a boundary must see the next batch, not the last one."""
    mine = batches["replica"] == replica
    s, e = batches["start"][mine] - CLOCK_EPS, batches["end"][mine] - CLOCK_EPS
    return ((s[None, :] <= t[:, None]) & (t[:, None] < e[None, :])).sum(axis=1)


def check_batcher(scenario: Scenario, cols: Columns) -> None:
    """The dynamic batcher's rules (docs/model.md), checked on the request log:

    - at most `instances` batches in service on a replica at any time;
    - FIFO: on each replica, requests start in arrival order;
    - a batch smaller than max_batch_size takes everything waiting: no request of its replica is
      left queued when it starts;
    - with a window, a batch smaller than max_batch_size starts only once its oldest request has
      waited max_wait_ms;
    - no idle executor while a batch is due: from the moment a batch is full, or its oldest request
      has waited max_wait_ms (0 for greedy batching), until it starts, every executor is busy;
    - queue capacity: no accepted arrival finds `queue_capacity` requests waiting, and every
      rejected one does.
    """
    serving = scenario.serving
    overhead_s = serving.overhead_ms / 1000.0
    max_batch = serving.batching.max_batch_size
    max_wait_s = serving.batching.max_wait_ms / 1000.0
    instances = serving.instances_per_replica
    batches = _batches(cols, overhead_s)
    # (With timeout_ms < max_wait_ms this means no partial batch ever goes: its oldest request times
    # out first. test_property_known_bugs.py pins the case of deadlines within rounding of each other.)
    window_s = max_wait_s

    arrival, start, outcome, replica = cols["arrival_s"], cols["start_s"], cols["outcome"], cols["replica"]
    hit = cols["cache_hit"]
    started = np.isfinite(start) & ~hit
    # How long each request that entered a queue stayed there: until its batch started, until its
    # deadline if it timed out, for ever if it was still queued when the run stopped.
    entered = (started | (outcome == TIMED_OUT) | ((outcome == IN_FLIGHT) & ~hit)) & (outcome != REJECTED)
    queued_until = np.where(started, start, np.where(outcome == TIMED_OUT, cols["end_s"], np.inf))

    for r in range(serving.replicas):
        mine = batches["replica"] == r
        if mine.any():
            busy_at_starts = _busy(batches, r, batches["start"][mine])
            assert busy_at_starts.max() <= instances, f"replica {r}: {busy_at_starts.max()} batches > {instances}"
        served_here = started & (replica == r)
        assert np.all(np.diff(start[served_here]) >= 0), f"replica {r}: not FIFO"

        waiting = entered & (replica == r)
        w_arrival, w_until = arrival[waiting], queued_until[waiting]

        # Partial batches take everything waiting.
        partial = mine & (batches["size"] < max_batch)
        for s in np.unique(batches["start"][partial]):
            left = int(((w_arrival < s) & (w_until > s)).sum())
            assert left == 0, f"replica {r}: a batch of < max_batch_size at {s} left {left} waiting"
            if max_wait_s > 0:
                oldest = batches["oldest"][partial & (batches["start"] == s)].min()
                assert s - oldest >= window_s - EPS, (
                    f"replica {r}: partial batch at {s} went after {s - oldest:.3g} s < window {window_s} s"
                )

        # No idle executor while a batch is due: a batch is due once it is full (its youngest
        # request arrived) or its oldest request has waited out the window (0 for greedy batching);
        # from then until it starts, every executor of its replica must be busy.
        due = np.minimum(
            batches["oldest"][mine] + window_s,
            np.where(batches["size"][mine] == max_batch, batches["youngest"][mine], np.inf),
        )
        begin = batches["start"][mine]
        late = begin - due > EPS
        if late.any():
            lo, hi = due[late], begin[late]
            for frac in (0.05, 0.5, 0.95):
                t = lo + frac * (hi - lo)
                busy = _busy(batches, r, t)
                assert np.all(busy == instances), (
                    f"replica {r}: idle executor at {t[busy < instances][:3]} while a batch was due"
                )

        # Queue capacity, seen from each arrival.
        if serving.queue_capacity is not None:
            cap = serving.queue_capacity
            # Waiting just after each accepted arrival t (itself included if it waited): [a, until) holds t.
            accepted_t = w_arrival
            level = ((w_arrival[None, :] <= accepted_t[:, None]) & (accepted_t[:, None] < w_until[None, :])).sum(axis=1)
            assert np.all(level <= cap), f"replica {r}: {level.max()} waiting > queue_capacity {cap}"
            rejected_t = arrival[(outcome == REJECTED) & (replica == r)]
            if rejected_t.size:
                # Closed at the end: a request leaving at exactly the rejection instant may still
                # have been there when the arrival was handled.
                found = ((w_arrival[None, :] <= rejected_t[:, None]) & (rejected_t[:, None] <= w_until[None, :])).sum(
                    axis=1
                )
                assert np.all(found >= cap), f"replica {r}: rejected while only {found.min()} < {cap} were waiting"


def check_run(result: RunResult) -> None:
    """Every invariant on every replication."""
    check_conservation(result)
    check_levels(result)
    for rep in result.replications:
        assert rep.requests is not None
        check_request_columns(result.scenario, rep.requests)
        check_batcher(result.scenario, rep.requests)


def describe(scenario: Scenario) -> dict[str, Any]:
    """The scenario as a plain mapping, for failure messages."""
    return scenario.model_dump(mode="json")

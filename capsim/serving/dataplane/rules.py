"""The rules of the real-time data plane, one function each, as docs/model.md ("Real-time serving")
states them: `pick_replica` (the balancer), `enter_front_end` / `leave_front_end`, `enqueue`
(join the queue, or rejected at capacity), `dispatch` (the dynamic batcher) and `start_batch`,
`window_closed` (a batching timer fires), `complete` (a batch finishes: its requests booked, or
folded without a request log, fold.py), `expire` (timeouts) and `check_drained`. `kernel.advance`
is the event loop that pops events and calls them.

Each takes the plane `p` (capsim/serving/dataplane/plane.py) and, where it books outcomes, the
request log's columns `log`. The hot ones are inlined into `advance` (`inline="always"`), which
is compiled without numba's reference counting, so passing the whole plane costs nothing; the rare
ones (`expire`, `reject`, `check_drained`) are plain calls that keep their own counting. Times are
computed as SimPy would compute them from the clock it would read (`clock + (t - clock)`: an event
is scheduled a delay ahead of the clock), so the loop keeps the SimPy data plane's exact ties.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

# Service-time forms (what each means: capsim.servicetime.base.BatchTimeTable).
from capsim.servicetime.base import FORM_EXPONENTIAL, FORM_LOGNORMAL, FORM_TABLE
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.dataplane.fold import fold_batch, folding
from capsim.serving.dataplane.heap import heap_push
from capsim.serving.dataplane.layout import (
    C_ALPHA,
    C_BALANCER,
    C_CAPACITY,
    C_DRAWS,
    C_FE_DRAWS,
    C_FE_FIXED_S,
    C_FORM,
    C_FRONTEND,
    C_HAS_TIMEOUT,
    C_INSTANCES,
    C_LB_DRAWS,
    C_LOC,
    C_MAX_BATCH,
    C_MAX_WAIT_S,
    C_OVERHEAD_S,
    C_PER_GPU,
    C_SIGMA,
    C_SIZE_RULE,
    C_SIZE_S,
    C_SIZED,
    C_TIMEOUT_S,
    C_WINDOW_LATE,
    CLOCK_SLACK_S,
    COMPLETED,
    DRAINED,
    DRAINED_SLOT,
    DRAINING,
    EV_DONE,
    EV_FRONT,
    EV_TIMER,
    F_BUSY_V,
    F_CLOCK,
    F_CONC_LAST,
    F_CONC_V,
    I_BASE,
    I_DRAINED_N,
    I_HEAP_N,
    I_LB_END,
    I_LB_POS,
    I_LOW_DRAWS,
    I_LOW_ROOM,
    I_N_READY,
    I_PENDING,
    NEED_DRAWS,
    NEED_ROOM,
    READY,
    REJECTED,
    TIMED_OUT,
)

# -- load balancers (capsim/serving/dataplane/balancers.py), compiled -------------------------------


def _chain(picks: tuple[Callable[..., int], ...]) -> Any:
    """One compiled function calling `picks[code]`: a chain of `if code == 0` tests, inlined into
    the loop (numba calls no function from a tuple by a run-time index without the experimental
    first-class function type, whose typing costs ~0.2 ms per call from Python)."""
    first = njit(inline="always", error_model="numpy")(picks[0])
    if len(picks) == 1:
        return first
    rest = _chain(picks[1:])
    last = len(picks) == 2

    def pick(code, ints, ready, n, loads, draws):  # type: ignore[no-untyped-def]
        if code == 0:
            return first(ints, ready, n, loads, draws)
        if last:
            return rest(ints, ready, n, loads, draws)
        return rest(code - 1, ints, ready, n, loads, draws)

    return njit(inline="always", error_model="numpy")(pick)


_balance = _chain(tuple(b.pick for b in BALANCERS.values()))
"""`_balance(cfg_i[C_BALANCER], ints, ready, n, loads, lb_draws)`: the ready slot that gets the next
request, n >= 2 ready, by the scenario's balancer."""
BALANCER_CODES = {name: code for code, name in enumerate(BALANCERS)}
"""`cfg_i[C_BALANCER]` for each balancer name."""


# -- levels and the service time ------------------------------------------------------------------


@njit(inline="always", error_model="numpy")
def integral_add(floats, at, t, delta):  # type: ignore[no-untyped-def]
    """Change the level stored at floats[at] (value, last change, area) by `delta` at `t`
    (capsim.metrics.live.RunningIntegral: the concurrency and busy executors autoscalers read)."""
    if t > floats[at + 1]:
        floats[at + 2] += floats[at] * (t - floats[at + 1])
        floats[at + 1] = t
    floats[at] += delta


NO_SIZE_GRID = np.ones(1)
"""The size grid of a service time without a size axis (what the pull loops pass: their requests
have no sizes)."""


@njit(inline="always", error_model="numpy")
def batch_items(rule, count, total, largest):  # type: ignore[no-untyped-def]
    """`size_rule`: a batch's work in size units — its requests' `total` size (rule 0, "total"), or
    `count` × its `largest` size (rule 1, "max": the batch padded to its longest request, as servers
    batch tensors). Without sizes every request has size 1 and both give `count`."""
    if rule == 1:
        return count * largest
    return total


@njit(inline="always", error_model="numpy")
def _quantile_row(levels, quantiles_s, row, x):  # type: ignore[no-untyped-def]
    """The quantile curve of row `row` read at level x (linear between levels)."""
    n_levels = levels.shape[0]
    j = np.searchsorted(levels, x, side="right")
    if j >= n_levels:
        return quantiles_s[row, n_levels - 1]
    w = (x - levels[j - 1]) / (levels[j] - levels[j - 1])
    lo = quantiles_s[row, j - 1]
    return lo + w * (quantiles_s[row, j] - lo)


@njit(inline="always", error_model="numpy")
def _size_blend(lo, hi, w):  # type: ignore[no-untyped-def]
    """Two grid sizes' times at one level blended with weight `w` on `hi`, guarded beyond the ends
    (capsim.servicetime.profile._blend, level by level)."""
    t = (1 - w) * lo + w * hi
    if w > 1:
        t = max(t, hi)
    elif w < 0:
        t = min(max(t, 0.0), lo)
    return max(t, 0.0)


@njit(inline="always", error_model="numpy")
def service_s(form, scale_s, cfg_f, levels, quantiles_s, size_grid, size_s, count, items, x):  # type: ignore[no-untyped-def]
    """One batch's service time from its draw x (capsim.servicetime.base.BatchTimeTable): `count`
    requests doing `items` size units of work (`batch_items`; `count` without sizes). The forms'
    scale is the count term plus `size_s` per unit; a profile with a size axis blends its curves at
    the two grid sizes around the per-request size items / count (rows `count * m + j`), level by
    level as capsim.servicetime.profile._blend does."""
    if form == FORM_TABLE:
        return scale_s[count] + size_s * items
    if form == FORM_EXPONENTIAL:
        return (scale_s[count] + size_s * items) * x
    if form == FORM_LOGNORMAL:
        return (scale_s[count] + size_s * items) * math.exp(cfg_f[C_LOC] + cfg_f[C_SIGMA] * x)
    # FORM_QUANTILE (capsim.servicetime.profile.ProfileService.sampler)
    m = size_grid.shape[0]
    if m == 1:
        return _quantile_row(levels, quantiles_s, count, x)
    per_request = items / count
    i = np.searchsorted(size_grid, per_request, side="left")
    if i < m and size_grid[i] == per_request:
        return _quantile_row(levels, quantiles_s, count * m + i, x)
    lo = min(max(i - 1, 0), m - 2)
    w = (per_request - size_grid[lo]) / (size_grid[lo + 1] - size_grid[lo])
    row = count * m + lo
    n_levels = levels.shape[0]
    j = np.searchsorted(levels, x, side="right")
    if j >= n_levels:
        return _size_blend(quantiles_s[row, n_levels - 1], quantiles_s[row + 1, n_levels - 1], w)
    a = _size_blend(quantiles_s[row, j - 1], quantiles_s[row + 1, j - 1], w)
    b = _size_blend(quantiles_s[row, j], quantiles_s[row + 1, j], w)
    return a + (x - levels[j - 1]) / (levels[j] - levels[j - 1]) * (b - a)


@njit(inline="always", error_model="numpy")
def needs_python_status(p):  # type: ignore[no-untyped-def]
    """What Python must do before the next event (a status of layout.py), or -1: nothing."""
    ints = p.ints
    if ints[I_DRAINED_N] > 0:
        return DRAINED
    if ints[I_LOW_DRAWS]:
        return NEED_DRAWS
    if ints[I_LB_END] - ints[I_LB_POS] < p.cfg_i[C_LB_DRAWS]:
        return NEED_DRAWS
    if ints[I_LOW_ROOM] or ints[I_HEAP_N] + p.cfg_i[C_INSTANCES] + 2 > p.h_time.shape[0]:
        return NEED_ROOM
    return -1


# -- outcomes other than completion (rare paths: plain calls) --------------------------------------


@njit(error_model="numpy")
def check_drained(p, s, now):  # type: ignore[no-untyped-def]
    """A draining replica with nothing left in its front end, queue or executors has drained: it is
    reported to Python (which frees its slot and stops billing it)."""
    if p.slot_state[s] == DRAINING and p.q_len[s] == 0 and p.in_service[s] == 0 and p.fe_inside[s] == 0:
        p.slot_state[s] = DRAINED_SLOT
        n = p.ints[I_DRAINED_N]
        p.drained_slot[n] = s
        p.drained_s[n] = now
        p.ints[I_DRAINED_N] = n + 1


@njit(inline="always", error_model="numpy")
def head_due(p, log, s, now):  # type: ignore[no-untyped-def]
    """Whether slot `s`'s oldest queued request has reached its deadline: the cheap test before
    `expire`."""
    return (
        p.q_len[s] > 0
        and log.arrival_s[p.q_ids[s, p.q_head[s]] - p.ints[I_BASE]] + p.cfg_f[C_TIMEOUT_S] - now <= CLOCK_SLACK_S
    )


@njit(error_model="numpy")
def expire(p, log, s, now):  # type: ignore[no-untyped-def]
    """`timeout_ms`: queued requests of slot `s` past their deadline (arrival + timeout) leave the
    queue as timed out, each booked at its deadline. A deadline a rounding error away
    (CLOCK_SLACK_S) counts as reached: the request must expire, not start."""
    timeout_s = p.cfg_f[C_TIMEOUT_S]
    base = p.ints[I_BASE]
    cap = p.q_ids.shape[1]
    expired = 0
    while p.q_len[s] > 0:
        head = p.q_head[s]
        row = p.q_ids[s, head] - base
        deadline = log.arrival_s[row] + timeout_s
        if deadline - now > CLOCK_SLACK_S:
            break
        p.q_head[s] = head + 1 if head + 1 < cap else 0
        p.q_len[s] -= 1
        log.outcome[row] = TIMED_OUT
        log.end_s[row] = deadline if deadline <= now else now
        log.replica[row] = p.slot_replica[s]
        expired += 1
    if expired:
        last = p.floats[F_CONC_LAST]
        integral_add(p.floats, F_CONC_V, now if now > last else last, -expired)
        p.loads[s] -= expired
        p.ints[I_PENDING] -= expired
        check_drained(p, s, now)


@njit(inline="always", error_model="numpy")
def expire_due(p, log, s, now):  # type: ignore[no-untyped-def]
    """`expire` slot `s`'s queue when timeouts are on and its oldest request is due."""
    if p.cfg_i[C_HAS_TIMEOUT] != 0 and head_due(p, log, s, now):
        expire(p, log, s, now)


@njit(error_model="numpy")
def reject(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    """`queue_capacity`: the request finds no room to wait at slot `s` and leaves as rejected."""
    row = request_id - p.ints[I_BASE]
    log.outcome[row] = REJECTED
    log.end_s[row] = now
    log.replica[row] = p.slot_replica[s]
    p.ints[I_PENDING] -= 1


# -- the request's way: balancer, front end, queue ---------------------------------------------------


@njit(inline="always", error_model="numpy")
def pick_replica(p, log, now):  # type: ignore[no-untyped-def]
    """The ready replica that gets an arriving request: the only one, or the scenario's balancer's
    pick (capsim/serving/dataplane/balancers.py) after each replica's expired requests have left,
    so that the balancer sees outstanding requests as they are."""
    n = p.ints[I_N_READY]
    if n == 1:
        return p.ready[0]
    if p.cfg_i[C_HAS_TIMEOUT] != 0:
        for r in range(n):
            if head_due(p, log, p.ready[r], now):
                expire(p, log, p.ready[r], now)
    return _balance(p.cfg_i[C_BALANCER], p.ints, p.ready, n, p.loads, p.lb_draws)


@njit(inline="always", error_model="numpy")
def enter_front_end(p, s, request_id, now):  # type: ignore[no-untyped-def]
    """`serving.frontend`: the request takes the earliest free of slot `s`'s front-end servers
    (first come, first served) for a fixed or drawn time, so when it leaves for the queue is known
    now; it counts as outstanding meanwhile."""
    fe_free = p.fe_free
    p.loads[s] += 1
    integral_add(p.floats, F_CONC_V, now, 1.0)
    w = 0
    for v in range(1, p.cfg_i[C_FRONTEND]):
        if fe_free[s, v] < fe_free[s, w]:
            w = v
    begin_s = fe_free[s, w] if fe_free[s, w] > now else now
    if p.cfg_i[C_FE_DRAWS] != 0:
        took_s = p.fe_draws[s, p.fe_pos[s]]
        p.fe_pos[s] += 1
        if p.fe_end[s] - p.fe_pos[s] < 1:
            p.ints[I_LOW_DRAWS] = 1
    else:
        took_s = p.cfg_f[C_FE_FIXED_S]
    fe_free[s, w] = begin_s + took_s
    p.fe_inside[s] += 1
    clock = p.floats[F_CLOCK]
    heap_push(p, clock + ((begin_s + took_s) - clock), EV_FRONT, s, request_id)


@njit(inline="always", error_model="numpy")
def leave_front_end(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    """The request leaves slot `s`'s front end: returned for the queue, or -1 if its deadline
    (from arrival) passed meanwhile (then it is timed out at its deadline)."""
    p.fe_inside[s] -= 1
    p.loads[s] -= 1  # (counted again as it joins the queue)
    integral_add(p.floats, F_CONC_V, now, -1.0)
    if p.cfg_i[C_HAS_TIMEOUT] != 0:
        row = request_id - p.ints[I_BASE]
        deadline_s = log.arrival_s[row] + p.cfg_f[C_TIMEOUT_S]
        if deadline_s - now <= CLOCK_SLACK_S:
            log.outcome[row] = TIMED_OUT
            log.end_s[row] = deadline_s if deadline_s < now else now
            log.replica[row] = p.slot_replica[s]
            p.ints[I_PENDING] -= 1
            return -1
    return request_id


@njit(inline="always", error_model="numpy")
def enqueue(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    """The request joins slot `s`'s FIFO queue and the batcher looks at it (`dispatch`), unless the
    queue holds `queue_capacity` waiting requests and no executor could start it at once: then, or
    if it is still waiting beyond the capacity once the batcher has taken what it could, it is
    rejected (the capacity counts waiting requests, not those in service)."""
    q_len = p.q_len
    capacity = p.cfg_i[C_CAPACITY]
    expire_due(p, log, s, now)
    if capacity >= 0 and q_len[s] >= capacity and p.idle[s] == 0:
        reject(p, log, s, request_id, now)
        return
    cap = p.q_ids.shape[1]
    tail = p.q_head[s] + q_len[s]
    if tail >= cap:
        tail -= cap
    p.q_ids[s, tail] = request_id
    p.q_entered[s, tail] = now  # (its batching window counts from here when a front end precedes)
    q_len[s] += 1
    if q_len[s] >= cap - 1:
        p.ints[I_LOW_ROOM] = 1
    p.loads[s] += 1
    integral_add(p.floats, F_CONC_V, now, 1.0)
    # While a batch is forming only a full queue can start it early.
    if p.idle[s] > 0 and (p.forming[s] == 0 or q_len[s] >= p.cfg_i[C_MAX_BATCH]):
        dispatch(p, log, s, now)
    if capacity >= 0 and q_len[s] > capacity:  # the newcomer, last in the queue, did not start
        q_len[s] -= 1
        p.loads[s] -= 1
        integral_add(p.floats, F_CONC_V, now, -1.0)
        reject(p, log, s, request_id, now)


# -- the dynamic batcher and the executors ---------------------------------------------------------


@njit(inline="always", error_model="numpy")
def window_closes_s(clock, due_s, late_s):  # type: ignore[no-untyped-def]
    """When a batching timer for a window due at `due_s` fires: `late_s` after it (the late window,
    `serving.frontend.window_late_quantiles_ms`: the server's timer runs on its front end's loop;
    0 without it). The batch is due from `due_s` on: one that fills up meanwhile still goes at once
    (dispatch), and the late timer then finds it gone (stale). Scheduled as SimPy would: a delay
    ahead of `clock`."""
    return clock + ((due_s + late_s) - clock)


@njit(inline="always", error_model="numpy")
def interference_factor(p, s):  # type: ignore[no-untyped-def]
    """`hardware.sharing` (capsim.hardware.sharing): replicas in slots s // C_PER_GPU share one GPU by
    time-slicing or MPS, so a batch of slot `s` takes `1 + alpha × c` times its drawn service time,
    c being the other replicas of its GPU with a batch in service when it starts (alpha 1 for
    time-slicing: round-robin turns; MPS: measured). Fixed at the start: co-runners that start or
    finish later do not change it."""
    per_gpu = p.cfg_i[C_PER_GPU]
    first = (s // per_gpu) * per_gpu
    last = min(first + per_gpu, p.slot_state.shape[0])
    busy = 0
    for other in range(first, last):
        live = READY <= p.slot_state[other] <= DRAINING  # (READY = 1, DRAINING = 2: a replica with a slot)
        if other != s and live and p.idle[other] < p.cfg_i[C_INSTANCES]:
            busy += 1
    return 1.0 + p.cfg_f[C_ALPHA] * busy


@njit(inline="always", error_model="numpy")
def start_batch(p, log, s, size, now):  # type: ignore[no-untyped-def]
    """A free executor of slot `s` takes the `size` oldest queued requests; its completion is
    scheduled after the batch's service time (drawn from the replica's stream for its size and,
    with `workload.size`, its work in size units: `batch_items`)."""
    cap = p.q_ids.shape[1]
    p.idle[s] -= 1
    p.in_service[s] += size
    e = 0
    while p.b_size[s, e] != 0:
        e += 1
    head = p.q_head[s]
    sized = p.cfg_i[C_SIZED] != 0
    total = 0.0
    largest = 0.0
    base = p.ints[I_BASE]
    for j in range(size):
        p.b_ids[s, e, j] = p.q_ids[s, head]
        if sized:
            one = log.request_size[p.q_ids[s, head] - base]
            total += one
            largest = one if one > largest else largest
        head = head + 1 if head + 1 < cap else 0
    p.q_head[s] = head
    p.q_len[s] -= size
    p.b_size[s, e] = size
    p.b_start[s, e] = now
    integral_add(p.floats, F_BUSY_V, now, 1.0)
    x = 0.0
    if p.cfg_i[C_DRAWS] != 0:
        x = p.draws[s, p.draw_pos[s]]
        p.draw_pos[s] += 1
        if p.draw_end[s] - p.draw_pos[s] < p.cfg_i[C_INSTANCES]:
            p.ints[I_LOW_DRAWS] = 1
    items = batch_items(p.cfg_i[C_SIZE_RULE], size, total, largest) if sized else float(size)
    took_s = service_s(p.cfg_i[C_FORM], p.scale_s, p.cfg_f, p.levels, p.quantiles_s, p.size_grid, p.cfg_f[C_SIZE_S],
                       size, items, x)  # fmt: skip
    if p.cfg_i[C_PER_GPU] > 0:
        took_s *= interference_factor(p, s)
    clock = p.floats[F_CLOCK]
    heap_push(p, clock + ((now - clock) + took_s), EV_DONE, s, e)


@njit(inline="always", error_model="numpy")
def dispatch(p, log, s, now):  # type: ignore[no-untyped-def]
    """The dynamic batcher (Triton's): while an executor of slot `s` is free and requests wait, a
    batch of `max_batch_size` goes at once; a smaller one goes only when the oldest waiting request
    has waited `max_wait_ms` (from when it joined the queue; never past its deadline), else one
    batch forms at a time and a timer is set for when its window closes (`window_closes_s`).
    `max_wait_ms: 0` is greedy batching."""
    q_len, forming = p.q_len, p.forming
    max_batch = p.cfg_i[C_MAX_BATCH]
    max_wait_s = p.cfg_f[C_MAX_WAIT_S]
    while p.idle[s] > 0 and q_len[s] > 0:
        waiting = q_len[s]
        if waiting < max_batch and max_wait_s > 0:
            if forming[s] != 0:
                break  # the forming batch waits for its timer or for more requests
            head = p.q_head[s]
            head_arrival_s = log.arrival_s[p.q_ids[s, head] - p.ints[I_BASE]]
            oldest_s = p.q_entered[s, head] if p.cfg_i[C_FRONTEND] > 0 else head_arrival_s
            due_s = oldest_s + max_wait_s
            timeout_s = p.cfg_f[C_TIMEOUT_S]
            if p.cfg_i[C_HAS_TIMEOUT] != 0 and timeout_s < max_wait_s:
                # (the deadline counts from the arrival, before any front end)
                due_s = min(due_s, head_arrival_s + timeout_s)
            if due_s - now > CLOCK_SLACK_S:
                forming[s] = 1
                p.forming_token[s] += 1
                late_s = 0.0
                if p.cfg_i[C_WINDOW_LATE] != 0:  # the slot's next lateness draw (its own stream)
                    late_s = p.late_draws[s, p.late_pos[s]]
                    p.late_pos[s] += 1
                    if p.late_end[s] - p.late_pos[s] < 1:
                        p.ints[I_LOW_DRAWS] = 1
                fires_s = window_closes_s(p.floats[F_CLOCK], due_s, late_s)
                heap_push(p, fires_s, EV_TIMER, s, p.forming_token[s])
                break
        forming[s] = 0  # a full (or due) batch goes now; a pending timer is stale
        start_batch(p, log, s, waiting if waiting < max_batch else max_batch, now)


@njit(inline="always", error_model="numpy")
def window_closed(p, log, s, token, now):  # type: ignore[no-untyped-def]
    """A batching timer of slot `s` fires: if it is the forming batch's (not a stale one), the batch
    is due; returns whether the batcher should look at the queue."""
    if p.forming[s] == 0 or p.forming_token[s] != token:
        return False
    p.forming[s] = 0
    expire_due(p, log, s, now)
    return True


@njit(inline="always", error_model="numpy")
def complete(p, log, f, s, e, now):  # type: ignore[no-untyped-def]
    """Executor `e` of slot `s` finishes its batch: every request in it is answered `overhead_ms`
    later — booked in the request log (start, end, batch size, replica), or without one folded
    into the statistics `f` (fold.fold_batch) — and the executor is free; returns whether the
    batcher should look at the queue (requests wait) — a draining replica left with nothing is
    reported drained instead."""
    size = p.b_size[s, e]
    started_s = p.b_start[s, e]
    overhead_s = p.cfg_f[C_OVERHEAD_S]
    answered_s = now + overhead_s
    if folding(f):
        fold_batch(f, p, log, s, e, started_s, answered_s, overhead_s)
    else:
        replica = p.slot_replica[s]
        base = p.ints[I_BASE]
        for j in range(size):
            row = p.b_ids[s, e, j] - base
            log.start_s[row] = started_s
            log.end_s[row] = answered_s
            log.batch_size[row] = size
            log.replica[row] = replica
            log.outcome[row] = COMPLETED
    p.b_size[s, e] = 0
    integral_add(p.floats, F_BUSY_V, now, -1.0)
    integral_add(p.floats, F_CONC_V, now, -size)
    p.in_service[s] -= size
    p.loads[s] -= size
    p.idle[s] += 1
    p.ints[I_PENDING] -= size
    if p.q_len[s] > 0:
        expire_due(p, log, s, now)
        return True
    if p.slot_state[s] == DRAINING:
        check_drained(p, s, now)
    return False

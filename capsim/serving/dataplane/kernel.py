"""The real-time data plane compiled with numba: arrivals, load balancing, queues, the dynamic
batcher and executors, event by event, with exactly the rules of `capsim.serving.replica.Replica`
and `capsim.serving.fleet.RealtimeFleet._on_arrival` (the SimPy engine).

Everything that happens per request or per batch runs here; everything that happens per replica
or per control period (autoscalers, cold starts, draining decisions, the activator) stays in
Python on the SimPy kernel. `advance` handles every data-plane event before `stop_s` (the SimPy
queue's next event) in time order and returns; it also returns early, *between* two events, when
Python must act: the arrival chunk is used up, a random-draw buffer runs low, a queue or the event
heap needs room, a draining replica has finished, or an arrival finds no ready replica. Python does
what the status asks and calls again; no event is ever half handled.

Random numbers come from the same named streams, drawn by Python in the same 4,096-draw chunks as
the SimPy engine's samplers, and are consumed in the same order: both engines produce the same
sample path (tests/serving/test_dataplane_equivalence.py checks request by request).

State lives in the arrays of a `Plane` (capsim/serving/dataplane/plane.py); its scalar slots are
named by the I_*, F_*, C_* and K_* indexes below.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# Service-time forms (what each means: capsim.servicetime.base.BatchTimeTable).
from capsim.servicetime.base import FORM_EXPONENTIAL, FORM_LOGNORMAL, FORM_TABLE

# -- what `advance` returns ----------------------------------------------------------------------
RAN_TO_STOP = 0  # every event before stop_s is handled; F_NEXT holds the next event's time
NEED_ARRIVALS = 1  # the arrival chunk is used up: give the next (or set I_ARRIVALS_DONE)
NEED_DRAWS = 2  # a draw buffer runs low: slot in I_AUX (-1: the balancer's); refill it
NEED_ROOM = 3  # a queue or the event heap is nearly full: grow them
DRAINED = 4  # draining replicas finished: I_DRAINED_N entries in drained_slot / drained_s
NO_READY = 5  # the arrival (id in I_AUX, time in F_AUX) found no ready replica: the activator takes it

# -- ints: scalar state ----------------------------------------------------------------------------
I_N_READY = 0  # replicas in the balancer (their slots are ready[:n])
I_LB_NEXT = 1  # round robin's next index / least-outstanding's rotating start
I_LB_POS = 2  # next unused draw of the balancer's buffer
I_PENDING = 3  # requests routed past the cache and not finished (activator included)
I_ARRIVED = 4  # requests routed past the cache, cumulative
I_HEAP_N = 5
I_SEQ = 6  # events pushed so far: ties in time go in push order, as SimPy's event ids do
I_ARR_POS = 7  # next arrival of the chunk
I_ARR_N = 8  # arrivals in the chunk
I_ARRIVALS_DONE = 9  # 1 once the arrival stream is exhausted
I_AUX = 10
I_BASE = 11  # request id of the log's row 0
I_DRAINED_N = 12
I_LOW_DRAWS = 13  # set when a slot's draw buffer ran low (slot in I_AUX)
I_LOW_ROOM = 14  # set when a queue is nearly full
I_LB_END = 15  # draws in the balancer's buffer
N_INTS = 16

# -- floats: scalar state --------------------------------------------------------------------------
F_CONC_V = 0  # concurrency (outstanding requests) now, its last change and its integral since 0
F_CONC_LAST = 1
F_CONC_AREA = 2
F_BUSY_V = 3  # busy executors, likewise
F_BUSY_LAST = 4
F_BUSY_AREA = 5
F_AUX = 6
F_NEXT = 7  # time of the next data-plane event (inf: none)
N_FLOATS = 8

# -- cfg_i / cfg_f: settings -----------------------------------------------------------------------
C_INSTANCES = 0
C_MAX_BATCH = 1
C_CAPACITY = 2  # -1: unbounded
C_BALANCER = 3  # K_* below
C_FORM = 4  # service-time form (capsim.servicetime.base.BatchTimeTable.FORM_*)
C_DRAWS = 5  # 1 when the service time takes one draw per batch
C_HAS_TIMEOUT = 6
C_LB_DRAWS = 7  # 1 when the balancer draws random numbers (random, power_of_two)
N_CFG_I = 8
C_MAX_WAIT_S = 0
C_TIMEOUT_S = 1
C_OVERHEAD_S = 2
C_LOC = 3
C_SIGMA = 4
N_CFG_F = 5

K_ROUND_ROBIN = 0
K_RANDOM = 1
K_LEAST_OUTSTANDING = 2
K_POWER_OF_TWO = 3


# -- slot states -----------------------------------------------------------------------------------
FREE = 0
READY = 1
DRAINING = 2
DRAINED_SLOT = 3  # drained and reported; freed by Python

EV_DONE = 0
EV_TIMER = 1

# Request outcomes, as in capsim.metrics.request_log.
COMPLETED = 1
REJECTED = 2
TIMED_OUT = 3

# A batching deadline a rounding error away counts as reached (as in capsim.serving.replica).
CLOCK_SLACK_S = 1e-12


# -- the event heap: (time, seq) order -------------------------------------------------------------


@njit(cache=True)
def _heap_less(p, a, b):  # type: ignore[no-untyped-def]
    return p.h_time[a] < p.h_time[b] or (p.h_time[a] == p.h_time[b] and p.h_seq[a] < p.h_seq[b])


@njit(cache=True)
def _heap_swap(p, a, b):  # type: ignore[no-untyped-def]
    p.h_time[a], p.h_time[b] = p.h_time[b], p.h_time[a]
    p.h_seq[a], p.h_seq[b] = p.h_seq[b], p.h_seq[a]
    p.h_kind[a], p.h_kind[b] = p.h_kind[b], p.h_kind[a]
    p.h_slot[a], p.h_slot[b] = p.h_slot[b], p.h_slot[a]
    p.h_aux[a], p.h_aux[b] = p.h_aux[b], p.h_aux[a]


@njit(cache=True)
def _heap_push(p, t, kind, slot, aux):  # type: ignore[no-untyped-def]
    ints = p.ints
    i = ints[I_HEAP_N]
    ints[I_HEAP_N] = i + 1
    p.h_time[i] = t
    p.h_seq[i] = ints[I_SEQ]
    ints[I_SEQ] += 1
    p.h_kind[i] = kind
    p.h_slot[i] = slot
    p.h_aux[i] = aux
    while i > 0:
        parent = (i - 1) // 2
        if not _heap_less(p, i, parent):
            break
        _heap_swap(p, i, parent)
        i = parent


@njit(cache=True)
def _heap_pop(p):  # type: ignore[no-untyped-def]
    """Remove the top entry (read it first); restores the heap order."""
    ints = p.ints
    n = ints[I_HEAP_N] - 1
    ints[I_HEAP_N] = n
    if n == 0:
        return
    _heap_swap(p, 0, n)
    i = 0
    while True:
        left = 2 * i + 1
        if left >= n:
            break
        child = left
        right = left + 1
        if right < n and _heap_less(p, right, left):
            child = right
        if not _heap_less(p, child, i):
            break
        _heap_swap(p, i, child)
        i = child


# -- running integrals (capsim.metrics.live.RunningIntegral) ---------------------------------------


@njit(cache=True)
def _integral_add(f, at, t, delta):  # type: ignore[no-untyped-def]
    """Change the level stored at f[at] (value, last change, area) by `delta` at `t`."""
    if t > f[at + 1]:
        f[at + 2] += f[at] * (t - f[at + 1])
        f[at + 1] = t
    f[at] += delta


# -- one replica's queue, batcher and executors (capsim.serving.replica.Replica) -------------------


@njit(cache=True)
def _finished(p, count):  # type: ignore[no-untyped-def]
    p.ints[I_PENDING] -= count


@njit(cache=True)
def _check_drained(p, s, now):  # type: ignore[no-untyped-def]
    if p.slot_state[s] == DRAINING and p.q_len[s] == 0 and p.in_service[s] == 0:
        p.slot_state[s] = DRAINED_SLOT
        n = p.ints[I_DRAINED_N]
        p.drained_slot[n] = s
        p.drained_s[n] = now
        p.ints[I_DRAINED_N] = n + 1


@njit(cache=True)
def _expire(p, log, s, now):  # type: ignore[no-untyped-def]
    """Queued requests of slot `s` past their deadline leave, each booked at its deadline."""
    if p.cfg_i[C_HAS_TIMEOUT] == 0:
        return
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
        _integral_add(p.floats, F_CONC_V, now if now > last else last, -expired)
        p.loads[s] -= expired
        _finished(p, expired)
        if p.slot_state[s] == DRAINING:
            _check_drained(p, s, now)


@njit(cache=True)
def _service_s(p, s, size):  # type: ignore[no-untyped-def]
    form = p.cfg_i[C_FORM]
    if form == FORM_TABLE:
        return p.scale_s[size]
    pos = p.draw_pos[s]
    x = p.draws[s, pos]
    p.draw_pos[s] = pos + 1
    if form == FORM_EXPONENTIAL:
        return p.scale_s[size] * x
    if form == FORM_LOGNORMAL:
        return p.scale_s[size] * math.exp(p.cfg_f[C_LOC] + p.cfg_f[C_SIGMA] * x)
    # FORM_QUANTILE (capsim.servicetime.profile.ProfileService.sampler)
    levels = p.levels
    n_levels = levels.shape[0]
    j = np.searchsorted(levels, x, side="right")
    if j >= n_levels:
        return p.quantiles_s[size, n_levels - 1]
    lo_level = levels[j - 1]
    hi_level = levels[j]
    w = (x - lo_level) / (hi_level - lo_level)
    lo = p.quantiles_s[size, j - 1]
    return lo + w * (p.quantiles_s[size, j] - lo)


@njit(cache=True)
def _start_batch(p, s, size, now):  # type: ignore[no-untyped-def]
    p.idle[s] -= 1
    p.in_service[s] += size
    e = 0
    while p.b_size[s, e] != 0:
        e += 1
    cap = p.q_ids.shape[1]
    head = p.q_head[s]
    for j in range(size):
        p.b_ids[s, e, j] = p.q_ids[s, head]
        head = head + 1 if head + 1 < cap else 0
    p.q_head[s] = head
    p.q_len[s] -= size
    p.b_size[s, e] = size
    p.b_start[s, e] = now
    _integral_add(p.floats, F_BUSY_V, now, 1.0)
    done_s = now + _service_s(p, s, size)
    _heap_push(p, done_s, EV_DONE, s, e)
    if p.cfg_i[C_DRAWS] and p.draw_end[s] - p.draw_pos[s] < p.cfg_i[C_INSTANCES]:
        p.ints[I_LOW_DRAWS] = 1
        p.ints[I_AUX] = s


@njit(cache=True)
def _dispatch(p, log, s, now):  # type: ignore[no-untyped-def]
    """Start batches while an executor is free and the batching rule allows one."""
    max_batch = p.cfg_i[C_MAX_BATCH]
    max_wait_s = p.cfg_f[C_MAX_WAIT_S]
    while p.idle[s] > 0 and p.q_len[s] > 0:
        waiting = p.q_len[s]
        if waiting < max_batch and max_wait_s > 0:
            if p.forming[s]:
                return  # the forming batch waits for its timer or for more requests
            oldest_s = log.arrival_s[p.q_ids[s, p.q_head[s]] - p.ints[I_BASE]]
            due_s = oldest_s + max_wait_s
            if p.cfg_i[C_HAS_TIMEOUT] and p.cfg_f[C_TIMEOUT_S] < max_wait_s:
                due_s = min(due_s, oldest_s + p.cfg_f[C_TIMEOUT_S])
            if due_s - now > CLOCK_SLACK_S:
                p.forming[s] = 1
                p.forming_token[s] += 1
                _heap_push(p, due_s, EV_TIMER, s, p.forming_token[s])
                return
        p.forming[s] = 0  # a full (or due) batch goes now; a pending timer is stale
        _start_batch(p, s, waiting if waiting < max_batch else max_batch, now)


@njit(cache=True)
def _reject(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    row = request_id - p.ints[I_BASE]
    log.outcome[row] = REJECTED
    log.end_s[row] = now
    log.replica[row] = p.slot_replica[s]
    _finished(p, 1)


@njit(cache=True)
def _enqueue(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    """A request reaches slot `s` at `now`: queue it (maybe starting a batch) or reject it."""
    if p.cfg_i[C_HAS_TIMEOUT]:
        _expire(p, log, s, now)
    capacity = p.cfg_i[C_CAPACITY]
    if capacity >= 0 and p.q_len[s] >= capacity and p.idle[s] == 0:
        _reject(p, log, s, request_id, now)  # no room to wait, and no executor to start at once
        return
    cap = p.q_ids.shape[1]
    tail = p.q_head[s] + p.q_len[s]
    if tail >= cap:
        tail -= cap
    p.q_ids[s, tail] = request_id
    p.q_len[s] += 1
    if p.q_len[s] >= cap - 1:
        p.ints[I_LOW_ROOM] = 1
    p.loads[s] += 1
    _integral_add(p.floats, F_CONC_V, now, 1.0)
    if p.idle[s] > 0:
        if p.q_len[s] == 1 and p.cfg_f[C_MAX_WAIT_S] == 0:
            _start_batch(p, s, 1, now)  # greedy batching, alone in the queue: it goes at once
        elif p.forming[s] == 0 or p.q_len[s] >= p.cfg_i[C_MAX_BATCH]:
            _dispatch(p, log, s, now)
    if capacity >= 0 and p.q_len[s] > capacity:
        # The capacity counts waiting requests: the newcomer did not start and finds no room.
        p.q_len[s] -= 1
        p.loads[s] -= 1
        _integral_add(p.floats, F_CONC_V, now, -1.0)
        _reject(p, log, s, request_id, now)


@njit(cache=True)
def _on_batch_done(p, log, s, e, now):  # type: ignore[no-untyped-def]
    size = p.b_size[s, e]
    start_s = p.b_start[s, e]
    end_s = now + p.cfg_f[C_OVERHEAD_S]
    base = p.ints[I_BASE]
    replica = p.slot_replica[s]
    for j in range(size):
        row = p.b_ids[s, e, j] - base
        log.start_s[row] = start_s
        log.end_s[row] = end_s
        log.batch_size[row] = size
        log.replica[row] = replica
        log.outcome[row] = COMPLETED
    p.b_size[s, e] = 0
    _integral_add(p.floats, F_BUSY_V, now, -1.0)
    _integral_add(p.floats, F_CONC_V, now, -size)
    p.in_service[s] -= size
    p.loads[s] -= size
    p.idle[s] += 1
    _finished(p, size)
    if p.q_len[s] > 0:
        if p.cfg_i[C_HAS_TIMEOUT]:
            _expire(p, log, s, now)
        _dispatch(p, log, s, now)
    elif p.slot_state[s] == DRAINING:
        _check_drained(p, s, now)


@njit(cache=True)
def _on_timer(p, log, s, token, now):  # type: ignore[no-untyped-def]
    if p.forming[s] == 0 or p.forming_token[s] != token:
        return  # the batch already went (it filled up): this timer is stale
    p.forming[s] = 0
    if p.cfg_i[C_HAS_TIMEOUT]:
        _expire(p, log, s, now)
    _dispatch(p, log, s, now)


# -- the balancer (capsim.serving.balancer) --------------------------------------------------------


@njit(cache=True)
def _lb_draw(p):  # type: ignore[no-untyped-def]
    pos = p.ints[I_LB_POS]
    p.ints[I_LB_POS] = pos + 1
    return p.lb_draws[pos]


@njit(cache=True)
def _pick(p):  # type: ignore[no-untyped-def]
    """The ready slot that gets the next request (n >= 1 ready)."""
    ints = p.ints
    n = ints[I_N_READY]
    kind = p.cfg_i[C_BALANCER]
    if kind == K_ROUND_ROBIN:
        i = ints[I_LB_NEXT] % n
        ints[I_LB_NEXT] = i + 1
        return p.ready[i]
    if kind == K_RANDOM:
        i = min(int(_lb_draw(p) * n), n - 1)
        return p.ready[i]
    if kind == K_LEAST_OUTSTANDING:
        start = ints[I_LB_NEXT]
        if start >= n:
            start = 0  # the fleet may have shrunk
        ints[I_LB_NEXT] = start + 1 if start + 1 < n else 0
        best = start
        best_load = p.loads[p.ready[start]]
        if best_load == 0:
            return p.ready[best]
        for step in range(1, n):
            i = start + step
            if i >= n:
                i -= n
            load = p.loads[p.ready[i]]
            if load < best_load:
                best = i
                best_load = load
                if load == 0:
                    break
        return p.ready[best]
    # K_POWER_OF_TWO
    if n == 1:
        return p.ready[0]
    a = min(int(_lb_draw(p) * n), n - 1)
    b = min(int(_lb_draw(p) * (n - 1)), n - 2)
    if b >= a:
        b += 1
    return p.ready[a] if p.loads[p.ready[a]] <= p.loads[p.ready[b]] else p.ready[b]


@njit(cache=True)
def _route(p, log, request_id, t):  # type: ignore[no-untyped-def]
    """Send a request to a ready replica (at least one is ready), as RealtimeFleet._route."""
    n = p.ints[I_N_READY]
    if n == 1:
        _enqueue(p, log, p.ready[0], request_id, t)
        return
    if p.cfg_i[C_HAS_TIMEOUT]:
        for k in range(n):
            _expire(p, log, p.ready[k], t)
    _enqueue(p, log, _pick(p), request_id, t)


@njit(cache=True)
def needs_python(p):  # type: ignore[no-untyped-def]
    """The status to return between two events, or -1 to go on."""
    ints = p.ints
    if ints[I_DRAINED_N] > 0:
        return DRAINED
    if ints[I_LOW_DRAWS]:
        return NEED_DRAWS
    if p.cfg_i[C_LB_DRAWS] and ints[I_LB_END] - ints[I_LB_POS] < 2:
        ints[I_AUX] = -1
        return NEED_DRAWS
    if ints[I_LOW_ROOM] or ints[I_HEAP_N] + p.cfg_i[C_INSTANCES] + 2 > p.h_time.shape[0]:
        return NEED_ROOM
    return -1


@njit(cache=True)
def advance(p, log, arr_t, arr_id, stop_s):  # type: ignore[no-untyped-def]
    """Handle every data-plane event before `stop_s` in time order (see the module docstring)."""
    ints = p.ints
    status = needs_python(p)
    if status >= 0:
        return status
    while True:
        if ints[I_ARR_POS] < ints[I_ARR_N]:
            t_arrival = arr_t[ints[I_ARR_POS]]
        elif ints[I_ARRIVALS_DONE]:
            t_arrival = np.inf
        else:
            return NEED_ARRIVALS
        t_heap = p.h_time[0] if ints[I_HEAP_N] > 0 else np.inf
        if t_arrival < t_heap:  # (a tie goes to the event already scheduled, as in SimPy)
            if t_arrival >= stop_s:
                p.floats[F_NEXT] = t_arrival
                return RAN_TO_STOP
            k = ints[I_ARR_POS]
            ints[I_ARR_POS] = k + 1
            request_id = arr_id[k]
            ints[I_ARRIVED] += 1
            ints[I_PENDING] += 1
            if ints[I_N_READY] == 0:
                ints[I_AUX] = request_id
                p.floats[F_AUX] = t_arrival
                return NO_READY
            _route(p, log, request_id, t_arrival)
        else:
            if t_heap >= stop_s:  # (also when nothing is left: both are inf)
                p.floats[F_NEXT] = t_heap
                return RAN_TO_STOP
            kind = p.h_kind[0]
            s = p.h_slot[0]
            aux = p.h_aux[0]
            _heap_pop(p)
            if kind == EV_DONE:
                _on_batch_done(p, log, s, aux, t_heap)
            else:
                _on_timer(p, log, s, aux, t_heap)
        status = needs_python(p)
        if status >= 0:
            return status


# -- entry points for Python's control plane -------------------------------------------------------


@njit(cache=True)
def route_one(p, log, request_id, t):  # type: ignore[no-untyped-def]
    """The activator hands a buffered request to the (now non-empty) fleet at `t`."""
    _route(p, log, request_id, t)
    return needs_python(p)


@njit(cache=True)
def expire_slot(p, log, s, now):  # type: ignore[no-untyped-def]
    """Time out slot `s`'s queued requests past their deadline at `now`."""
    _expire(p, log, s, now)


@njit(cache=True)
def begin_draining(p, log, s, now):  # type: ignore[no-untyped-def]
    """Slot `s` leaves the balancer (Python has already removed it from `ready`): it finishes its
    queue and batches, then reports drained (maybe at once)."""
    p.slot_state[s] = DRAINING
    _expire(p, log, s, now)
    _check_drained(p, s, now)


@njit(cache=True)
def book_in_service(p, log, s):  # type: ignore[no-untyped-def]
    """End of run: book the start of slot `s`'s batches still in service (they stay in flight)."""
    base = p.ints[I_BASE]
    for e in range(p.b_size.shape[1]):
        size = p.b_size[s, e]
        for j in range(size):
            row = p.b_ids[s, e, j] - base
            log.start_s[row] = p.b_start[s, e]
            log.end_s[row] = np.nan
            log.batch_size[row] = size
            log.replica[row] = p.slot_replica[s]
        p.b_size[s, e] = 0

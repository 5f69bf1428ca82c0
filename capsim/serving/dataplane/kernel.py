"""The real-time data plane compiled with numba: arrivals, load balancing, queues, the dynamic
batcher and executors, event by event, with the rules of docs/model.md ("Real-time serving").

Everything that happens per request or per batch runs here; everything that happens per replica
or per control period (autoscalers, cold starts, draining decisions, the activator) stays in
Python on the SimPy kernel. `advance` handles every data-plane event before `stop_s` (the SimPy
queue's next event) in time order and returns; it also returns early, *between* two events, when
Python must act: the arrival chunk is used up, a random-draw buffer runs low, a queue or the event
heap needs room, a draining replica has finished, or an arrival finds no ready replica. Python does
what the status asks and calls again; no event is ever half handled.

Random numbers come from named streams, drawn by Python in 4,096-draw chunks. Event times are
computed as SimPy computes them from the clock it would read (`clock + (t - clock)`: an event is
scheduled a delay ahead of the clock), the next arrival waits as one timer beside the heap, and
equal times go in scheduling order: the loop reproduces, bit for bit, exact ties included, the SimPy
data plane it replaced (docs/model.md, "How the control plane and the data plane meet").

State lives in the arrays of a `Plane` (capsim/serving/dataplane/plane.py); its scalar slots are
named in capsim/serving/dataplane/layout.py.

Why one long event loop instead of a function per rule: numba counts references to every array a
function binds, and a helper taking the whole plane re-binds all its arrays on every call — with
helpers per rule, that atomic reference counting took more time than the simulation itself (2 µs
per request). `advance` binds each array once per call and handles the hot path (arrival, routing,
batching, batch completion) in its own body; helpers take only the few arrays they touch, and the
ones taking the whole plane (`_expire`, `_reject`, the entry points for Python) serve rare paths.
`advance` itself is compiled with `_nrt=False` (no reference counting at all): it allocates nothing
and Python holds every array it reads across the call, so none needs counting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

# Service-time forms (what each means: capsim.servicetime.base.BatchTimeTable).
from capsim.servicetime.base import FORM_EXPONENTIAL, FORM_LOGNORMAL, FORM_TABLE
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.dataplane.compiled_cache import drop_stale_cache
from capsim.serving.dataplane.layout import (
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
    C_SIGMA,
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
    F_AUX,
    F_BUSY_V,
    F_CLOCK,
    F_CONC_LAST,
    F_CONC_V,
    F_NEXT,
    F_TIMER,
    I_ARR_N,
    I_ARR_POS,
    I_ARRIVALS_DONE,
    I_ARRIVED,
    I_AUX,
    I_BASE,
    I_DRAINED_N,
    I_DUE,
    I_HEAP_N,
    I_IN_LOOP,
    I_LB_END,
    I_LB_POS,
    I_LOW_DRAWS,
    I_LOW_ROOM,
    I_N_READY,
    I_PENDING,
    I_SEQ,
    I_TIMER_ON,
    I_TIMER_SEQ,
    NEED_ARRIVALS,
    NEED_DRAWS,
    NEED_ROOM,
    NO_READY,
    RAN_TO_STOP,
    REJECTED,
    TIMED_OUT,
)

# -- load balancers (capsim/serving/dataplane/balancers.py), compiled ---------------------------------


# numba keys this module's cache on this file alone: drop it when what it compiles in changed.
drop_stale_cache(Path(__file__).parent, "kernel", ("balancers.py", "layout.py"))


def _dispatch(picks: tuple[Callable[..., int], ...]) -> Any:
    """One compiled function calling `picks[code]`: a chain of `if code == 0` tests, inlined into
    `advance` (numba calls no function from a tuple by a run-time index without the experimental
    first-class function type, whose typing costs ~0.2 ms per call from Python)."""
    first = njit(inline="always", error_model="numpy")(picks[0])
    if len(picks) == 1:
        return first
    rest = _dispatch(picks[1:])
    last = len(picks) == 2

    def pick(code, ints, ready, n, loads, draws):  # type: ignore[no-untyped-def]
        if code == 0:
            return first(ints, ready, n, loads, draws)
        if last:
            return rest(ints, ready, n, loads, draws)
        return rest(code - 1, ints, ready, n, loads, draws)

    return njit(inline="always", error_model="numpy")(pick)


_pick = _dispatch(tuple(b.pick for b in BALANCERS.values()))
"""`_pick(cfg_i[C_BALANCER], ints, ready, n, loads, lb_draws)`: the ready slot that gets the next
request, n >= 2 ready, by the scenario's balancer."""
BALANCER_CODES = {name: code for code, name in enumerate(BALANCERS)}
"""`cfg_i[C_BALANCER]` for each balancer name."""

# -- the event heap: (time, seq) order -------------------------------------------------------------


@njit(cache=True, inline="always", error_model="numpy")
def _heap_push(h_time, h_seq, h_kind, h_slot, h_aux, ints, t, kind, slot, aux):  # type: ignore[no-untyped-def]
    i = ints[I_HEAP_N]
    ints[I_HEAP_N] = i + 1
    seq = ints[I_SEQ]
    ints[I_SEQ] = seq + 1
    while i > 0:  # sift up: move parents down until the new entry's place is found
        parent = (i - 1) >> 1
        if h_time[parent] < t or (h_time[parent] == t and h_seq[parent] < seq):
            break
        h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = (
            h_time[parent],
            h_seq[parent],
            h_kind[parent],
            h_slot[parent],
            h_aux[parent],
        )
        i = parent
    h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = t, seq, kind, slot, aux


@njit(cache=True, inline="always", error_model="numpy")
def _heap_pop(h_time, h_seq, h_kind, h_slot, h_aux, ints):  # type: ignore[no-untyped-def]
    """Remove the top entry (read it first)."""
    n = ints[I_HEAP_N] - 1
    ints[I_HEAP_N] = n
    if n == 0:
        return
    t, seq, kind, slot, aux = h_time[n], h_seq[n], h_kind[n], h_slot[n], h_aux[n]
    i = 0
    while True:  # sift down the last entry from the root
        child = 2 * i + 1
        if child >= n:
            break
        right = child + 1
        if right < n and (
            h_time[right] < h_time[child] or (h_time[right] == h_time[child] and h_seq[right] < h_seq[child])
        ):
            child = right
        if t < h_time[child] or (t == h_time[child] and seq < h_seq[child]):
            break
        h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = (
            h_time[child],
            h_seq[child],
            h_kind[child],
            h_slot[child],
            h_aux[child],
        )
        i = child
    h_time[i], h_seq[i], h_kind[i], h_slot[i], h_aux[i] = t, seq, kind, slot, aux


# -- running integrals (capsim.metrics.live.RunningIntegral) ---------------------------------------


@njit(cache=True, inline="always", error_model="numpy")
def _integral_add(floats, at, t, delta):  # type: ignore[no-untyped-def]
    """Change the level stored at floats[at] (value, last change, area) by `delta` at `t`."""
    if t > floats[at + 1]:
        floats[at + 2] += floats[at] * (t - floats[at + 1])
        floats[at + 1] = t
    floats[at] += delta


# -- rules on a replica's queue --------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def _check_drained(ints, slot_state, q_len, in_service, fe_inside, drained_slot, drained_s, s, now):  # type: ignore[no-untyped-def]
    if slot_state[s] == DRAINING and q_len[s] == 0 and in_service[s] == 0 and fe_inside[s] == 0:
        slot_state[s] = DRAINED_SLOT
        n = ints[I_DRAINED_N]
        drained_slot[n] = s
        drained_s[n] = now
        ints[I_DRAINED_N] = n + 1


@njit(cache=True, error_model="numpy")
def _expire(p, log, s, now):  # type: ignore[no-untyped-def]
    """Queued requests of slot `s` past their deadline leave, each booked at its deadline.
    (Only with timeouts; it takes the plane, so each call costs its reference counting.)"""
    timeout_s = p.cfg_f[C_TIMEOUT_S]
    base = p.ints[I_BASE]
    cap = p.q_ids.shape[1]
    expired = 0
    while p.q_len[s] > 0:
        head = p.q_head[s]
        row = p.q_ids[s, head] - base
        deadline = log.arrival_s[row] + timeout_s
        if deadline - now > CLOCK_SLACK_S:
            break  # (a deadline a rounding error away counts as reached: it must expire, not start)
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
        p.ints[I_PENDING] -= expired
        _check_drained(p.ints, p.slot_state, p.q_len, p.in_service, p.fe_inside, p.drained_slot, p.drained_s, s, now)


@njit(cache=True, inline="always", error_model="numpy")
def _head_due(q_ids, q_head, q_len, arrival_s, base, timeout_s, s, now):  # type: ignore[no-untyped-def]
    """Whether slot `s`'s oldest queued request has reached its deadline: the cheap test before
    `_expire`, whose plane argument costs its reference counting on every call."""
    return q_len[s] > 0 and arrival_s[q_ids[s, q_head[s]] - base] + timeout_s - now <= CLOCK_SLACK_S


@njit(cache=True, error_model="numpy")
def _reject(p, log, s, request_id, now):  # type: ignore[no-untyped-def]
    row = request_id - p.ints[I_BASE]
    log.outcome[row] = REJECTED
    log.end_s[row] = now
    log.replica[row] = p.slot_replica[s]
    p.ints[I_PENDING] -= 1


@njit(cache=True, inline="always", error_model="numpy")
def _service_s(form, scale_s, cfg_f, levels, quantiles_s, size, x):  # type: ignore[no-untyped-def]
    """One batch's service time from its draw x (capsim.servicetime.base.BatchTimeTable)."""
    if form == FORM_TABLE:
        return scale_s[size]
    if form == FORM_EXPONENTIAL:
        return scale_s[size] * x
    if form == FORM_LOGNORMAL:
        return scale_s[size] * math.exp(cfg_f[C_LOC] + cfg_f[C_SIGMA] * x)
    # FORM_QUANTILE (capsim.servicetime.profile.ProfileService.sampler)
    n_levels = levels.shape[0]
    j = np.searchsorted(levels, x, side="right")
    if j >= n_levels:
        return quantiles_s[size, n_levels - 1]
    w = (x - levels[j - 1]) / (levels[j] - levels[j - 1])
    lo = quantiles_s[size, j - 1]
    return lo + w * (quantiles_s[size, j] - lo)


@njit(cache=True, inline="always", error_model="numpy")
def _needs_python(ints, cfg_i, h_time):  # type: ignore[no-untyped-def]
    """The status to return between two events, or -1 to go on."""
    if ints[I_DRAINED_N] > 0:
        return DRAINED
    if ints[I_LOW_DRAWS]:
        return NEED_DRAWS
    if ints[I_LB_END] - ints[I_LB_POS] < cfg_i[C_LB_DRAWS]:
        return NEED_DRAWS
    if ints[I_LOW_ROOM] or ints[I_HEAP_N] + cfg_i[C_INSTANCES] + 2 > h_time.shape[0]:
        return NEED_ROOM
    return -1


@njit(cache=True, inline="always", error_model="numpy")
def _window_closes_s(clock, due_s, late_s):  # type: ignore[no-untyped-def]
    """When a batching timer for a window due at `due_s` fires: `late_s` after it (the late window,
    `serving.frontend.window_late_quantiles_ms`: the server's timer runs on its front end's loop;
    0 without it). The batch is due from `due_s` on: one that fills up meanwhile still goes at once
    (dispatch), and the late timer then finds it gone (stale). Scheduled as SimPy would: a delay
    ahead of `clock`. (Scalars only: an array argument would cost its reference counting on every
    timer, ~10% of a day's run.)"""
    return clock + ((due_s + late_s) - clock)


# -- the event loop --------------------------------------------------------------------------------


# Compiled without numba's reference counting (NRT): every read of one of the plane's arrays inside
# the inlined rules took an atomic increment and decrement through a call (as in the streaming loop,
# capsim/serving/streaming/kernel.py). The loop allocates nothing (all its state is the plane's
# arrays, allocated by Python) and Python holds every array across the call, so no reference needs
# counting; an allocation added here fails to compile rather than leak. The helpers it calls
# without inlining (`_expire`, `_reject`, `_check_drained`) keep their own counting, balanced
# within each call.
@njit(cache=True, error_model="numpy", _nrt=False)  # type: ignore[call-overload]  # a numba option its stubs do not list
def advance(p, log, arr_t, arr_id, stop_s, inject_id, inject_s):  # type: ignore[no-untyped-def]
    """Handle every data-plane event before `stop_s` in time order (see the module docstring).
    With `inject_id` >= 0, route only that request at `inject_s` (the activator hands it over);
    pass -1 and 0.0 otherwise (always the same types: numba compiles one version)."""
    ints, floats, cfg_i, cfg_f = p.ints, p.floats, p.cfg_i, p.cfg_f
    slot_replica, slot_state = p.slot_replica, p.slot_state
    q_ids, q_head, q_len = p.q_ids, p.q_head, p.q_len
    idle, in_service, loads, forming, forming_token = p.idle, p.in_service, p.loads, p.forming, p.forming_token
    draws, draw_pos, draw_end = p.draws, p.draw_pos, p.draw_end
    b_ids, b_size, b_start = p.b_ids, p.b_size, p.b_start
    ready, drained_slot, drained_s = p.ready, p.drained_slot, p.drained_s
    q_entered, fe_free, fe_inside, fe_draws, fe_pos, fe_end = (
        p.q_entered, p.fe_free, p.fe_inside, p.fe_draws, p.fe_pos, p.fe_end
    )
    late_draws, late_pos, late_end = p.late_draws, p.late_pos, p.late_end
    h_time, h_seq, h_kind, h_slot, h_aux = p.h_time, p.h_seq, p.h_kind, p.h_slot, p.h_aux
    scale_s, levels, quantiles_s, lb_draws = p.scale_s, p.levels, p.quantiles_s, p.lb_draws
    arrival_s, start_col, end_col, replica_col = log.arrival_s, log.start_s, log.end_s, log.replica
    size_col, outcome_col = log.batch_size, log.outcome

    instances = cfg_i[C_INSTANCES]
    max_batch = cfg_i[C_MAX_BATCH]
    capacity = cfg_i[C_CAPACITY]
    form = cfg_i[C_FORM]
    takes_draw = cfg_i[C_DRAWS] != 0
    has_timeout = cfg_i[C_HAS_TIMEOUT] != 0
    max_wait_s = cfg_f[C_MAX_WAIT_S]
    timeout_s = cfg_f[C_TIMEOUT_S]
    overhead_s = cfg_f[C_OVERHEAD_S]
    base = ints[I_BASE]
    cap = q_ids.shape[1]
    fe_workers = cfg_i[C_FRONTEND]
    balancer = cfg_i[C_BALANCER]
    fe_drawn = cfg_i[C_FE_DRAWS] != 0
    window_late = cfg_i[C_WINDOW_LATE] != 0

    status = _needs_python(ints, cfg_i, h_time)
    if status >= 0:
        return status
    while True:
        # -- the next event: an arrival (or the injected request), a batch completion or a timer
        now = 0.0
        s = -1
        arriving = -1  # the request arriving in this event, if one is
        from_front = False  # (it comes from its replica's front end: already routed)
        dispatch = False
        if inject_id >= 0:
            now = inject_s
            floats[F_CLOCK] = inject_s  # (Python hands it over during a control event, at the clock)
            arriving = inject_id
            inject_id = -2  # handled below, then the call returns
        else:
            if inject_id == -2:
                return _needs_python(ints, cfg_i, h_time)
            t_heap = h_time[0] if ints[I_HEAP_N] > 0 else np.inf
            if ints[I_IN_LOOP]:
                # -- the next arrival of a run (arrival lookahead): handled at once while it
                # comes before every other event, else it gets a timer, scheduled as SimPy would.
                if ints[I_ARR_POS] >= ints[I_ARR_N]:
                    if ints[I_ARRIVALS_DONE]:
                        ints[I_IN_LOOP] = 0
                        continue
                    return NEED_ARRIVALS
                k = ints[I_ARR_POS]
                t_arrival = arr_t[k]
                if ints[I_DUE] == 0 and t_arrival >= (t_heap if t_heap < stop_s else stop_s):
                    clock = floats[F_CLOCK]
                    floats[F_TIMER] = clock + (t_arrival - clock)  # (SimPy: env.timeout(t - now))
                    ints[I_TIMER_SEQ] = ints[I_SEQ]
                    ints[I_SEQ] += 1
                    ints[I_TIMER_ON] = 1
                    ints[I_IN_LOOP] = 0
                    continue
                ints[I_DUE] = 0
                ints[I_ARR_POS] = k + 1
                now = t_arrival
                arriving = arr_id[k]
                ints[I_ARRIVED] += 1
                ints[I_PENDING] += 1
                if ints[I_N_READY] == 0:
                    ints[I_AUX] = arriving
                    floats[F_AUX] = now
                    return NO_READY
            else:
                timer_first = ints[I_TIMER_ON] != 0 and (
                    floats[F_TIMER] < t_heap or (floats[F_TIMER] == t_heap and ints[I_TIMER_SEQ] < h_seq[0])
                )
                t_next = floats[F_TIMER] if timer_first else t_heap
                if t_next >= stop_s:  # (also when nothing is left: both are inf)
                    floats[F_NEXT] = t_next
                    return RAN_TO_STOP
                now = t_next
                floats[F_CLOCK] = t_next
                if timer_first:  # the arrival timer fires: a run of arrivals begins
                    ints[I_TIMER_ON] = 0
                    ints[I_IN_LOOP] = 1
                    ints[I_DUE] = 1
                    continue
                kind = h_kind[0]
                s = h_slot[0]
                aux = h_aux[0]
                _heap_pop(h_time, h_seq, h_kind, h_slot, h_aux, ints)
                if kind == EV_DONE:
                    # -- a batch finishes: its requests are answered (after the fixed overhead)
                    size = b_size[s, aux]
                    started_s = b_start[s, aux]
                    answered_s = now + overhead_s
                    replica = slot_replica[s]
                    for j in range(size):
                        row = b_ids[s, aux, j] - base
                        start_col[row] = started_s
                        end_col[row] = answered_s
                        size_col[row] = size
                        replica_col[row] = replica
                        outcome_col[row] = COMPLETED
                    b_size[s, aux] = 0
                    _integral_add(floats, F_BUSY_V, now, -1.0)
                    _integral_add(floats, F_CONC_V, now, -size)
                    in_service[s] -= size
                    loads[s] -= size
                    idle[s] += 1
                    ints[I_PENDING] -= size
                    if q_len[s] > 0:
                        if has_timeout and _head_due(q_ids, q_head, q_len, arrival_s, base, timeout_s, s, now):
                            _expire(p, log, s, now)
                        dispatch = True
                    elif slot_state[s] == DRAINING:
                        _check_drained(ints, slot_state, q_len, in_service, fe_inside, drained_slot, drained_s, s, now)
                elif kind == EV_FRONT:
                    # -- a request leaves the front end for the batcher's queue
                    fe_inside[s] -= 1
                    loads[s] -= 1  # (counted again as it joins the queue)
                    _integral_add(floats, F_CONC_V, now, -1.0)
                    arriving = aux
                    from_front = True
                    if has_timeout:
                        deadline_s = arrival_s[aux - base] + timeout_s
                        if deadline_s - now <= CLOCK_SLACK_S:  # its deadline passed in the front end
                            row = aux - base
                            outcome_col[row] = TIMED_OUT
                            end_col[row] = deadline_s if deadline_s < now else now
                            replica_col[row] = slot_replica[s]
                            ints[I_PENDING] -= 1
                            arriving = -1
                            if slot_state[s] == DRAINING:
                                _check_drained(
                                    ints, slot_state, q_len, in_service, fe_inside, drained_slot, drained_s, s, now
                                )
                elif forming[s] != 0 and forming_token[s] == aux:
                    # -- the forming batch's window closed (a stale timer does nothing)
                    forming[s] = 0
                    if has_timeout and _head_due(q_ids, q_head, q_len, arrival_s, base, timeout_s, s, now):
                        _expire(p, log, s, now)
                    dispatch = True

        if arriving >= 0 and not from_front:
            # -- route it (pick_replica: the scenario's balancer, capsim/serving/dataplane/balancers.py)
            n = ints[I_N_READY]
            if n == 1:
                s = ready[0]
            else:
                if has_timeout:
                    for r in range(n):
                        if _head_due(q_ids, q_head, q_len, arrival_s, base, timeout_s, ready[r], now):
                            _expire(p, log, ready[r], now)
                s = _pick(balancer, ints, ready, n, loads, lb_draws)
            if fe_workers > 0:
                # -- into the replica's front end first (serving.frontend): FIFO
                # servers, so the time it leaves is known now: the earliest free server takes it.
                loads[s] += 1
                _integral_add(floats, F_CONC_V, now, 1.0)
                w = 0
                for v in range(1, fe_workers):
                    if fe_free[s, v] < fe_free[s, w]:
                        w = v
                begin_s = fe_free[s, w] if fe_free[s, w] > now else now
                if fe_drawn:
                    took_s = fe_draws[s, fe_pos[s]]
                    fe_pos[s] += 1
                    if fe_end[s] - fe_pos[s] < 1:
                        ints[I_LOW_DRAWS] = 1
                else:
                    took_s = cfg_f[C_FE_FIXED_S]
                fe_free[s, w] = begin_s + took_s
                fe_inside[s] += 1
                clock = floats[F_CLOCK]
                leaves_s = clock + ((begin_s + took_s) - clock)
                _heap_push(h_time, h_seq, h_kind, h_slot, h_aux, ints, leaves_s, EV_FRONT, s, arriving)
                arriving = -1

        if arriving >= 0:
            # -- queue it
            if has_timeout and _head_due(q_ids, q_head, q_len, arrival_s, base, timeout_s, s, now):
                _expire(p, log, s, now)
            if capacity >= 0 and q_len[s] >= capacity and idle[s] == 0:
                _reject(p, log, s, arriving, now)  # no room to wait, and no executor to start at once
                arriving = -1
            else:
                tail = q_head[s] + q_len[s]
                if tail >= cap:
                    tail -= cap
                q_ids[s, tail] = arriving
                q_entered[s, tail] = now  # (its batching window counts from here when a front end precedes)
                q_len[s] += 1
                if q_len[s] >= cap - 1:
                    ints[I_LOW_ROOM] = 1
                loads[s] += 1
                _integral_add(floats, F_CONC_V, now, 1.0)
                # While a batch is forming only a full queue can start it early.
                dispatch = idle[s] > 0 and (forming[s] == 0 or q_len[s] >= max_batch)

        if dispatch:
            # -- dispatch: start batches while an executor is free and the batching rule allows
            while idle[s] > 0 and q_len[s] > 0:
                waiting = q_len[s]
                if waiting < max_batch and max_wait_s > 0:
                    if forming[s] != 0:
                        break  # the forming batch waits for its timer or for more requests
                    head_arrival_s = arrival_s[q_ids[s, q_head[s]] - base]
                    oldest_s = q_entered[s, q_head[s]] if fe_workers > 0 else head_arrival_s
                    due_s = oldest_s + max_wait_s
                    if has_timeout and timeout_s < max_wait_s:
                        # (the deadline counts from the arrival, before any front end)
                        due_s = min(due_s, head_arrival_s + timeout_s)
                    if due_s - now > CLOCK_SLACK_S:
                        forming[s] = 1
                        forming_token[s] += 1
                        late_s = 0.0
                        if window_late:  # the slot's next lateness draw (its own stream)
                            late_s = late_draws[s, late_pos[s]]
                            late_pos[s] += 1
                            if late_end[s] - late_pos[s] < 1:
                                ints[I_LOW_DRAWS] = 1
                        fires_s = _window_closes_s(floats[F_CLOCK], due_s, late_s)
                        _heap_push(h_time, h_seq, h_kind, h_slot, h_aux, ints, fires_s, EV_TIMER, s, forming_token[s])
                        break
                forming[s] = 0  # a full (or due) batch goes now; a pending timer is stale
                size = waiting if waiting < max_batch else max_batch
                idle[s] -= 1
                in_service[s] += size
                e = 0
                while b_size[s, e] != 0:
                    e += 1
                head = q_head[s]
                for j in range(size):
                    b_ids[s, e, j] = q_ids[s, head]
                    head = head + 1 if head + 1 < cap else 0
                q_head[s] = head
                q_len[s] -= size
                b_size[s, e] = size
                b_start[s, e] = now
                _integral_add(floats, F_BUSY_V, now, 1.0)
                x = 0.0
                if takes_draw:
                    x = draws[s, draw_pos[s]]
                    draw_pos[s] += 1
                    if draw_end[s] - draw_pos[s] < instances:
                        ints[I_LOW_DRAWS] = 1
                clock = floats[F_CLOCK]
                done_s = clock + ((now - clock) + _service_s(form, scale_s, cfg_f, levels, quantiles_s, size, x))
                _heap_push(h_time, h_seq, h_kind, h_slot, h_aux, ints, done_s, EV_DONE, s, e)

        if arriving >= 0 and capacity >= 0 and q_len[s] > capacity:
            # The capacity counts waiting requests: the newcomer did not start and finds no room.
            q_len[s] -= 1
            loads[s] -= 1
            _integral_add(floats, F_CONC_V, now, -1.0)
            _reject(p, log, s, arriving, now)

        if from_front and slot_state[s] == DRAINING:
            _check_drained(ints, slot_state, q_len, in_service, fe_inside, drained_slot, drained_s, s, now)

        status = _needs_python(ints, cfg_i, h_time)
        if status >= 0 and inject_id != -2:
            return status


# -- entry points for Python's control plane -------------------------------------------------------


@njit(cache=True, error_model="numpy")
def needs_python(p):  # type: ignore[no-untyped-def]
    """What Python must do before the next event (a status above), or -1: nothing."""
    return _needs_python(p.ints, p.cfg_i, p.h_time)


@njit(cache=True, error_model="numpy")
def expire_slot(p, log, s, now):  # type: ignore[no-untyped-def]
    """Time out slot `s`'s queued requests past their deadline at `now`."""
    if p.cfg_i[C_HAS_TIMEOUT]:
        _expire(p, log, s, now)


@njit(cache=True, error_model="numpy")
def begin_draining(p, log, s, now):  # type: ignore[no-untyped-def]
    """Slot `s` leaves the balancer (Python has already removed it from `ready`): it finishes its
    queue and batches, then reports drained (maybe at once)."""
    p.slot_state[s] = DRAINING
    if p.cfg_i[C_HAS_TIMEOUT]:
        _expire(p, log, s, now)
    _check_drained(p.ints, p.slot_state, p.q_len, p.in_service, p.fe_inside, p.drained_slot, p.drained_s, s, now)


@njit(cache=True, error_model="numpy")
def hand_over_queue(p, s, now):  # type: ignore[no-untyped-def]
    """Slot `s` gives up every queued request (Python re-routes them; ReplicaHandle.hand_over_queue):
    a spot replica at its interruption notice. Batches in service stay."""
    count = p.q_len[s]
    p.q_len[s] = 0
    p.q_head[s] = 0
    p.loads[s] -= count
    last = p.floats[F_CONC_LAST]
    _integral_add(p.floats, F_CONC_V, now if now > last else last, -count)
    p.forming[s] = 0  # a pending window timer is stale
    _check_drained(p.ints, p.slot_state, p.q_len, p.in_service, p.fe_inside, p.drained_slot, p.drained_s, s, now)


@njit(cache=True, error_model="numpy")
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

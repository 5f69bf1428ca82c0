"""The real-time data plane compiled with numba: the event loop `advance`, which pops arrivals and
events in time order and applies the rules of docs/model.md ("Real-time serving"), each a named
function in capsim/serving/dataplane/rules.py, and the entry points through which Python's control
plane changes the plane between two calls.

Everything that happens per request or per batch runs here; everything that happens per replica
or per control period (autoscalers, cold starts, draining decisions, the activator) stays in
Python on the SimPy kernel. `advance` handles every data-plane event before `stop_s` (the SimPy
queue's next event) in time order and returns; it also returns early, *between* two events, when
Python must act: the arrival chunk is used up, a random-draw buffer runs low, a queue or the event
heap needs room, a draining replica has finished, or an arrival finds no ready replica. Python does
what the status asks and calls again; no event is ever half handled.

Random numbers come from named streams, drawn by Python in 4,096-draw chunks. Event times are
computed as SimPy computes them from the clock it would read (`clock + (t - clock)`: an event is
scheduled a delay ahead of the clock), the next arrival waits as one timer beside the heap
(capsim/serving/dataplane/heap.py), and equal times go in scheduling order: the loop reproduces,
bit for bit, exact ties included, the SimPy data plane it replaced (docs/model.md, "How the control
plane and the data plane meet").

State lives in the arrays of a `Plane` (capsim/serving/dataplane/plane.py); its scalar slots are
named in capsim/serving/dataplane/layout.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numba import njit

from capsim.serving.dataplane.compiled_cache import drop_stale_cache
from capsim.serving.dataplane.heap import heap_pop
from capsim.serving.dataplane.layout import (
    C_FRONTEND,
    C_HAS_TIMEOUT,
    DRAINING,
    EV_DONE,
    EV_FRONT,
    F_AUX,
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
    I_DUE,
    I_HEAP_N,
    I_IN_LOOP,
    I_N_READY,
    I_PENDING,
    I_SEQ,
    I_TIMER_ON,
    I_TIMER_SEQ,
    NEED_ARRIVALS,
    NO_READY,
    RAN_TO_STOP,
)
from capsim.serving.dataplane.rules import (
    check_drained,
    complete,
    dispatch,
    enqueue,
    enter_front_end,
    expire,
    integral_add,
    leave_front_end,
    needs_python_status,
    pick_replica,
    window_closed,
)

# numba keys this module's cache on this file alone: drop it when what it compiles in changed.
drop_stale_cache(
    Path(__file__).parent,
    "kernel",
    ("balancers.py", "layout.py", "heap.py", "rules.py", "fold.py", "../../metrics/loop_stats.py"),
)


# Compiled without numba's reference counting (NRT): every read of one of the plane's arrays inside
# the inlined rules took an atomic increment and decrement through a call (as in the streaming loop,
# capsim/serving/streaming/kernel.py); with it, the rules could not each be a function taking the
# plane. The loop allocates nothing (all its state is the plane's arrays, allocated by Python) and
# Python holds every array across the call, so no reference needs counting; an allocation added
# here fails to compile rather than leak. The rules it calls without inlining (`expire`, `reject`,
# `check_drained`: rare paths) keep their own counting, balanced within each call.
@njit(cache=True, error_model="numpy", _nrt=False)  # type: ignore[call-overload]  # a numba option its stubs do not list
def advance(p, log, f, arr_t, arr_id, stop_s, inject_id, inject_s):  # type: ignore[no-untyped-def]
    """Handle every data-plane event before `stop_s` in time order (see the module docstring),
    writing finished requests to the request log's columns `log` or folding them into `f`
    (capsim/serving/dataplane/fold.py: a RequestFold, on without a request log). With
    `inject_id` >= 0, route only that request at `inject_s` (the activator hands it over); pass -1
    and 0.0 otherwise (always the same types: numba compiles one version)."""
    ints, floats, h_time, h_seq = p.ints, p.floats, p.h_time, p.h_seq
    fe_workers = p.cfg_i[C_FRONTEND]

    status = needs_python_status(p)
    if status >= 0:
        return status
    while True:
        # -- the next event: an arrival (or the injected request), a batch completion or a timer
        now = 0.0
        s = -1
        arriving = -1  # the request arriving in this event, if one is
        look = False  # whether the batcher should look at slot s's queue
        if inject_id >= 0:
            now = inject_s
            floats[F_CLOCK] = inject_s  # (Python hands it over during a control event, at the clock)
            arriving = inject_id
            inject_id = -2  # handled below, then the call returns
        else:
            if inject_id == -2:
                return needs_python_status(p)
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
                kind = p.h_kind[0]
                s = p.h_slot[0]
                aux = p.h_aux[0]
                heap_pop(p)
                if kind == EV_DONE:
                    look = complete(p, log, f, s, aux, now)
                elif kind == EV_FRONT:
                    request = leave_front_end(p, log, s, aux, now)
                    if request >= 0:
                        enqueue(p, log, s, request, now)
                    if p.slot_state[s] == DRAINING:
                        check_drained(p, s, now)
                else:
                    look = window_closed(p, log, s, aux, now)

        if arriving >= 0:
            s = pick_replica(p, log, now)
            if fe_workers > 0:
                enter_front_end(p, s, arriving, now)
            else:
                enqueue(p, log, s, arriving, now)
        elif look:
            dispatch(p, log, s, now)

        status = needs_python_status(p)
        if status >= 0 and inject_id != -2:
            return status


# -- entry points for Python's control plane -------------------------------------------------------


@njit(cache=True, error_model="numpy")
def needs_python(p):  # type: ignore[no-untyped-def]
    """What Python must do before the next event (a status of layout.py), or -1: nothing."""
    return needs_python_status(p)


@njit(cache=True, error_model="numpy")
def expire_slot(p, log, s, now):  # type: ignore[no-untyped-def]
    """Time out slot `s`'s queued requests past their deadline at `now`."""
    if p.cfg_i[C_HAS_TIMEOUT]:
        expire(p, log, s, now)


@njit(cache=True, error_model="numpy")
def begin_draining(p, log, s, now):  # type: ignore[no-untyped-def]
    """Slot `s` leaves the balancer (Python has already removed it from `ready`): it finishes its
    queue and batches, then reports drained (maybe at once)."""
    p.slot_state[s] = DRAINING
    if p.cfg_i[C_HAS_TIMEOUT]:
        expire(p, log, s, now)
    check_drained(p, s, now)


@njit(cache=True, error_model="numpy")
def hand_over_queue(p, s, now):  # type: ignore[no-untyped-def]
    """Slot `s` gives up every queued request (Python re-routes them; ReplicaHandle.hand_over_queue):
    a spot replica at its interruption notice. Batches in service stay."""
    count = p.q_len[s]
    p.q_len[s] = 0
    p.q_head[s] = 0
    p.loads[s] -= count
    last = p.floats[F_CONC_LAST]
    integral_add(p.floats, F_CONC_V, now if now > last else last, -count)
    p.forming[s] = 0  # a pending window timer is stale
    check_drained(p, s, now)


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

"""The async queue's data plane compiled with numba: jobs joining the FIFO queue, the dispatcher
handing batches to free workers, service and the store write, and the polling clients, with the
rules docs/model.md ("Async queue") states. The control plane — the feeder that draws submissions
in chunks, the worker pool (cold starts, removal after the current batch), KEDA and the depth
sampler — stays in Python on SimPy (capsim/serving/asyncqueue/workers.py) and advances this loop up
to its next event with `advance`.

Each rule is one function below: `enqueue` (a chunk of submissions joins the queue), `arrived_by`
(the queue's tail at a time), `dispatch` (the batch rule: a full batch at once, else wait for a full
batch or the oldest job's `batch_wait_ms`), `start_batch` (the longest-free worker takes the batch;
service time of its size, then the store write), `complete` (results stored; each client sees its
result at its next poll, `polls_to_see` / `poll_seen`) and `wake_dispatcher` (a worker freed, jobs
appended, a worker ready: the dispatcher looks again).

Event order is the SimPy implementation's, which this loop replaced and reproduces number for
number: event times are computed as SimPy computed them (`now + delay`); at one instant, batches
finish first (in the order they started), then the dispatcher runs once; a worker's service-time
draws come from its named stream in the same 4,096-draw chunks.

Jobs are ids 0, 1, ... in submission order; the queue is the range [head, end) of them, job j at
row j - origin of `times` (Python drops rows no longer needed when it appends a chunk). A worker is
a *slot* (indices are reused after a worker leaves) in one phase: FREE (no worker), IDLE (ready,
in the free queue, ordered by `free_seq`), BUSY (its batch finishes at `next_s`).

`advance` returns between two events when Python must act: a free worker's draw buffer is empty
(NEED_DRAWS), a leaving worker finished its batch (LEFT: Python removes it at that time), or the
last job finished after the feed ended (DRAINED).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from capsim.metrics.request_log import COMPLETED
from capsim.serving.asyncqueue.fold import fold_job, fold_taken
from capsim.serving.dataplane.rules import NO_SIZE_GRID  # (its requests have no sizes)
from capsim.serving.dataplane.rules import service_s as batch_service_s  # shared with real time
from capsim.serving.streaming.fold import I_ON, add_interval
from capsim.serving.streaming.kernel import _first_after

# phases of a slot
FREE = 0
IDLE = 1
BUSY = 2

# what `advance` returns (the slot in ints[I_SLOT], the time in floats[F_AT])
RAN_TO_STOP = 0
NEED_DRAWS = 1
LEFT = 2
DRAINED = 3

# ints / floats / cfg_i / cfg_f layout (loc and sigma sit where the shared `service_s` reads them)
I_HEAD = 0  # id of the oldest job not yet taken
I_END = 1  # jobs appended (arrived, or due within the current chunk)
I_ORIGIN = 2  # job id of row 0 of `times`
I_FINISHED = 3  # jobs whose result is stored
I_TARGET = 4  # jobs appended once the feed has ended (-1 while it goes on): DRAINED when finished
I_SEQ = 5  # counter ordering the free queue and batch starts
I_POLLS = 6  # client polls of jobs submitted after warm-up (the API tier's read load)
I_SLOT = 7
N_INTS = 8
F_AT = 0  # time of the LEFT / DRAINED event, or of the next event after RAN_TO_STOP
F_DISPATCH_AT = 1  # when the dispatcher looks next (inf: when woken)
F_DONE_AREA = 2  # time integral of stored results up to F_DONE_LAST_S (KEDA's concurrency metric)
F_DONE_LAST_S = 3
F_DONE_VALUE = 4  # results stored so far (as a float: the integral's level)
N_FLOATS = 5
C_BATCH = 0
C_FORM = 1
C_DRAWS = 2  # 1 when the service-time model takes one draw per batch
N_CFG_I = 3
C_WAIT_S = 0
C_WRITE_S = 1
C_INTERVAL_S = 2
# cfg_f[3], cfg_f[4]: loc and sigma (capsim.serving.dataplane.layout.C_LOC / C_SIGMA)
C_WARMUP_S = 5
N_CFG_F = 6

# A poll that lands within this of the moment the result is stored sees it (float noise in
# submit + k × interval must not cost a whole interval).
POLL_TIE_S = 1e-9


class QueueState(NamedTuple):
    """Every array the loop reads or writes (allocated and grown by Python: workers.py)."""

    times: np.ndarray  # submit times: job j at row j - ints[I_ORIGIN]
    # per slot
    phase: np.ndarray
    member_index: np.ndarray  # the worker's index (its `replica` in the request log)
    leaving: np.ndarray
    free_seq: np.ndarray  # IDLE: when it joined the free queue (the longest-free goes first)
    b_first: np.ndarray  # BUSY: the batch's first job id, size, start, order of start, end
    b_size: np.ndarray
    b_start: np.ndarray
    b_seq: np.ndarray
    next_s: np.ndarray
    draws: np.ndarray  # (slots, chunk): the worker's service-time stream, draws[s, pos:end] unused
    draw_pos: np.ndarray
    draw_end: np.ndarray
    # scalars and configuration
    ints: np.ndarray
    floats: np.ndarray
    cfg_i: np.ndarray
    cfg_f: np.ndarray
    scale_s: np.ndarray
    levels: np.ndarray
    quantiles_s: np.ndarray
    # per tick interval, the integral of busy workers and of jobs in service (bin k covers
    # [ticks[k-1], ticks[k]); the last bin what lies past the last tick)
    ticks: np.ndarray
    busy_area: np.ndarray
    in_service_area: np.ndarray


# -- the queue --------------------------------------------------------------------------------------


@njit(cache=True)
def enqueue(st, chunk_s, now):  # type: ignore[no-untyped-def]
    """A chunk of submissions (non-decreasing, the first at `now`) joins the queue's tail: each job
    is accepted at its submit time (202) and waits from then. Python has made room in `times`."""
    row = st.ints[I_END] - st.ints[I_ORIGIN]
    st.times[row : row + chunk_s.shape[0]] = chunk_s
    st.ints[I_END] += chunk_s.shape[0]
    wake_dispatcher(st, now)


@njit(cache=True, inline="always")
def arrived_by(times, origin, head, end, now):  # type: ignore[no-untyped-def]
    """The id one past the last job submitted by `now` (a job at `now` included): the queue's tail.
    Jobs [head, end) are the queued ones, their times non-decreasing."""
    return origin + _first_after(times, head - origin, end - origin, now)


@njit(cache=True, inline="always")
def wake_dispatcher(st, now):  # type: ignore[no-untyped-def]
    """The dispatcher looks again at `now` (after any batch finishing at `now`)."""
    st.floats[F_DISPATCH_AT] = min(st.floats[F_DISPATCH_AT], now)


# -- the dispatcher and the workers -----------------------------------------------------------------


@njit(cache=True, inline="always")
def longest_free(st):  # type: ignore[no-untyped-def]
    """The free worker that has waited longest (-1 if none)."""
    best = -1
    seq = 0
    for s in range(st.phase.shape[0]):
        if st.phase[s] == IDLE and (best < 0 or st.free_seq[s] < seq):
            best = s
            seq = st.free_seq[s]
    return best


@njit(cache=True, inline="always")
def short_of_draws(st):  # type: ignore[no-untyped-def]
    """A free worker whose draw buffer is empty (-1 if none): Python refills it before a dispatch,
    which may hand every free worker a batch."""
    if not st.cfg_i[C_DRAWS]:
        return -1
    for s in range(st.phase.shape[0]):
        if st.phase[s] == IDLE and st.draw_pos[s] >= st.draw_end[s]:
            return s
    return -1


@njit(cache=True, inline="always")
def dispatch(st, now):  # type: ignore[no-untyped-def]
    """The batch rule at `now`: while a worker is free and jobs wait, if `max_batch_size` wait the
    longest-free worker takes them; otherwise it takes up to `max_batch_size` once that many wait
    or the oldest has waited `batch_wait_ms` (0 takes what is there). Sets when to look again."""
    batch = st.cfg_i[C_BATCH]
    wait_s = st.cfg_f[C_WAIT_S]
    times, ints = st.times, st.ints
    origin = ints[I_ORIGIN]
    while True:
        s = longest_free(st)
        head, end = ints[I_HEAD], ints[I_END]
        if s < 0 or head >= end:
            st.floats[F_DISPATCH_AT] = math.inf  # a freed worker or new jobs wake it
            return
        queued = arrived_by(times, origin, head, end, now) - head
        oldest_s = times[head - origin]
        if queued >= batch or (queued > 0 and now >= oldest_s + wait_s):
            start_batch(st, s, min(queued, batch), now)
            continue
        full_s = times[head + batch - 1 - origin] if head + batch - 1 < end else math.inf
        wake_at = min(full_s, oldest_s + wait_s)
        st.floats[F_DISPATCH_AT] = now + max(wake_at - now, 0.0)
        return


@njit(cache=True, inline="always")
def start_batch(st, s, size, now):  # type: ignore[no-untyped-def]
    """Worker s takes the `size` oldest jobs at `now`: the batch takes the service time of its size
    (one draw from the worker's stream), then `store_write_ms`; the worker waits for the write."""
    ints = st.ints
    st.b_first[s] = ints[I_HEAD]
    ints[I_HEAD] += size
    st.b_size[s] = size
    st.b_start[s] = now
    st.b_seq[s] = ints[I_SEQ]
    ints[I_SEQ] += 1
    x = 0.0
    if st.cfg_i[C_DRAWS]:
        x = st.draws[s, st.draw_pos[s]]
        st.draw_pos[s] += 1
    service_s = batch_service_s(st.cfg_i[C_FORM], st.scale_s, st.cfg_f, st.levels, st.quantiles_s, NO_SIZE_GRID, 0.0,
                                size, float(size), x)  # fmt: skip
    st.phase[s] = BUSY
    st.next_s[s] = now + (service_s + st.cfg_f[C_WRITE_S])


@njit(cache=True, inline="always")
def polls_to_see(submit_s, ready_s, interval_s):  # type: ignore[no-untyped-def]
    """How many polls a client makes until one finds its result: it polls at submit + k × interval
    (k = 1, 2, ...) and the first poll at or after `ready_s` (within POLL_TIE_S) sees it. Scalars
    or arrays of submit times."""
    return np.maximum(np.ceil((ready_s - submit_s) / interval_s - POLL_TIE_S / interval_s), 1.0)


@njit(cache=True, inline="always")
def poll_seen(submit_s, ready_s, interval_s):  # type: ignore[no-untyped-def]
    """When the client sees a result stored at `ready_s`: submit + polls_to_see × interval."""
    return submit_s + polls_to_see(submit_s, ready_s, interval_s) * interval_s


@njit(cache=True, inline="always")
def complete(st, f, s, ready_s, log_base, start_col, end_col, size_col, replica_col, outcome_col, ready_col):  # type: ignore[no-untyped-def]
    """Worker s has stored its batch's results at `ready_s`: each job is seen at its client's next
    poll; its row is written (start, seen, batch size, worker, completed, stored) or, without a
    request log, it is folded into the statistics (fold.fold_job). The batch's busy interval goes
    into the levels and the stored results into the concurrency integral."""
    ints, floats, cfg_f = st.ints, st.floats, st.cfg_f
    size, first, start_s = st.b_size[s], st.b_first[s], st.b_start[s]
    interval_s, warmup_s = cfg_f[C_INTERVAL_S], cfg_f[C_WARMUP_S]
    folding = f.ints[I_ON]
    lo = first - ints[I_ORIGIN]
    k = 0
    if folding:
        k = np.searchsorted(st.ticks, st.times[lo], side="right")
        fold_taken(f, st.ticks, start_s, size)
    polls = 0.0
    for row in range(lo, lo + size):
        submit_s = st.times[row]
        count = polls_to_see(submit_s, ready_s, interval_s)
        seen_s = submit_s + count * interval_s
        if submit_s >= warmup_s:
            polls += count
        if folding:
            k = fold_job(f, st.ticks, k, submit_s, start_s, ready_s, seen_s, size)
        else:
            r = first + (row - lo) - log_base
            start_col[r] = start_s
            end_col[r] = seen_s
            size_col[r] = size
            replica_col[r] = st.member_index[s]
            outcome_col[r] = COMPLETED
            ready_col[r] = ready_s
    ints[I_POLLS] += int(polls)
    ints[I_FINISHED] += size
    if ready_s > floats[F_DONE_LAST_S]:  # capsim.metrics.live.RunningIntegral.add
        floats[F_DONE_AREA] += floats[F_DONE_VALUE] * (ready_s - floats[F_DONE_LAST_S])
        floats[F_DONE_LAST_S] = ready_s
    floats[F_DONE_VALUE] += size
    add_interval(st.busy_area, st.ticks, start_s, ready_s, 1.0)
    add_interval(st.in_service_area, st.ticks, start_s, ready_s, float(size))
    st.b_size[s] = 0


# Compiled without numba's reference counting, as the streaming loop (its comment says why): the
# loop allocates nothing, and Python holds every array across the call.
@njit(cache=True, _nrt=False)  # type: ignore[call-overload]  # a numba option its stubs do not list
def advance(st, f, stop_s, log_base, start_col, end_col, size_col, replica_col, outcome_col, ready_col):  # type: ignore[no-untyped-def]
    """Every event up to `stop_s` in time order (one due at `stop_s` itself before the control event
    there): batches finishing (at one instant, in the order they started), then the dispatcher.
    `f` is the statistics folded in the loop (streaming.fold.LoopFold). Returns RAN_TO_STOP
    (floats[F_AT]: the next event's time, after `stop_s`; inf if none) or, between two events,
    NEED_DRAWS / LEFT / DRAINED (ints[I_SLOT], floats[F_AT])."""
    slots = st.phase.shape[0]
    phases, next_s, b_seq, floats, ints = st.phase, st.next_s, st.b_seq, st.floats, st.ints
    while True:
        s = -1
        t = math.inf
        for i in range(slots):
            if phases[i] == BUSY and (next_s[i] < t or (next_s[i] == t and s >= 0 and b_seq[i] < b_seq[s])):
                t = next_s[i]
                s = i
        dispatch_at = floats[F_DISPATCH_AT]
        if dispatch_at < t:  # the dispatcher goes after the batches finishing at its instant
            if dispatch_at > stop_s:
                floats[F_AT] = dispatch_at
                return RAN_TO_STOP
            short = short_of_draws(st)
            if short >= 0:
                ints[I_SLOT] = short
                return NEED_DRAWS
            dispatch(st, dispatch_at)
            continue
        if s < 0 or t > stop_s:
            floats[F_AT] = t
            return RAN_TO_STOP
        complete(st, f, s, t, log_base, start_col, end_col, size_col, replica_col, outcome_col, ready_col)
        ints[I_SLOT] = s
        floats[F_AT] = t
        if st.leaving[s]:
            phases[s] = FREE  # it leaves without taking more work; Python removes it
            return LEFT
        phases[s] = IDLE
        st.free_seq[s] = ints[I_SEQ]
        ints[I_SEQ] += 1
        wake_dispatcher(st, t)
        if ints[I_FINISHED] == ints[I_TARGET]:
            return DRAINED

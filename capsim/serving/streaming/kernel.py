"""The streaming data plane compiled with numba: consumers' fetches, polls (micro-batches), scoring
and commits, event by event, with the rules docs/model.md ("Streaming") states. The control plane —
the topic's feeder, membership, rebalances, KEDA, cold starts — stays in Python on SimPy
(capsim/serving/streaming/group.py) and advances this loop up to its next event with `advance`.

Each rule is one function below: `visible_end` (what a fetch can see), `time_of_record` (when the
k-th record after the positions arrives), `fetch` (the broker's answer rule: fetch.min.bytes or
fetch.max.wait.ms), `poll` (max.poll.records over the owned partitions in rotating order, and the
batch's service time), `commit` (rows, offsets, levels) and `lag` (KEDA's metric). Event times are
computed with the SimPy expressions the pure-SimPy implementation used (`now + delay`), and draws
come from each consumer's named stream in the same 4,096-draw chunks, so the sample path is the same.

A consumer (a *slot*: indices are reused after a consumer leaves) is in one phase at a time:
OUTSIDE (no fetch in progress: it has no partitions or is leaving; a wake starts a fresh fetch),
WAIT_DATA (a fetch finds nothing appended beyond its positions: the feeder's wake continues it),
WAIT_TIMER (a fetch waits until `next_s`, when enough records are due or its deadline passes; a
wake continues it earlier), BUSY (scoring a batch until `next_s`), FREE (no consumer).

`advance` returns between two events when Python must act: a slot's draw buffer is empty
(NEED_DRAWS), a consumer whose commit has rebalance duties committed (NOTIFY: Python runs them at
that time), or the last record was scored after the feed ended (DRAINED).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from capsim.metrics.request_log import COMPLETED
from capsim.serving.dataplane.rules import NO_SIZE_GRID, service_s  # the batch service-time rule, shared with real time
from capsim.serving.streaming.fold import I_ON, add_interval, fold_scored

# phases of a slot (in this order: the loop tests ranges of them)
FREE = 0
OUTSIDE = 1
WAIT_DATA = 2
WAIT_TIMER = 3
BUSY = 4

# what `advance` returns (the slot in ints[I_SLOT], the time in floats[F_AT])
RAN_TO_STOP = 0
NEED_DRAWS = 1
NOTIFY = 2
DRAINED = 3

# ints / floats / cfg_i / cfg_f layout (loc and sigma sit where the shared `service_s` reads them)
I_SCORED = 0  # records scored and committed, cumulative
I_TARGET = 1  # records arrived once the feed has ended (-1 while it goes on): DRAINED when scored
I_SLOT = 2
N_INTS = 3
F_AT = 0  # time of the NOTIFY / DRAINED event, or of the next event after RAN_TO_STOP
N_FLOATS = 1
C_MAX_POLL = 0
C_MIN_RECORDS = 1
C_FORM = 2
C_DRAWS = 3  # 1 when the service-time model takes one draw per batch
N_CFG_I = 4
C_FETCH_WAIT_S = 0
# cfg_f[3], cfg_f[4]: loc and sigma (capsim.serving.dataplane.layout.C_LOC / C_SIGMA)
N_CFG_F = 6


class StreamState(NamedTuple):
    """Every array the loop reads or writes (allocated and grown by Python: group.py, topic.py)."""

    # the topic (topic.py): offset o of partition p at flat row o - origin[p]; rows in use end at end[p]
    times: np.ndarray
    ids: np.ndarray
    origin: np.ndarray
    end: np.ndarray
    position: np.ndarray  # next offset a poll hands out
    committed: np.ndarray  # offsets below are scored and committed
    # per slot
    phase: np.ndarray
    member_index: np.ndarray  # the consumer's index (its `replica` in the request log)
    leaving: np.ndarray
    wake: np.ndarray  # 1: look again at the next `advance` (data appended, partitions changed)
    notify: np.ndarray  # 1: return NOTIFY after this consumer's next commit
    owned: np.ndarray  # (slots, partitions): owned[s, :owned_n[s]] in the member's order
    owned_n: np.ndarray
    cursor: np.ndarray  # rotation of the partition order between polls
    next_s: np.ndarray  # WAIT_TIMER / BUSY: when the slot's next event is due
    sent_s: np.ndarray  # the fetch in progress: when it was sent, and its deadline
    deadline_s: np.ndarray
    b_part: np.ndarray  # (slots, partitions): the batch's partitions and offset ranges
    b_from: np.ndarray
    b_to: np.ndarray
    b_n: np.ndarray
    b_size: np.ndarray
    b_start: np.ndarray
    draws: np.ndarray  # (slots, chunk): the consumer's service-time stream, draws[s, pos:end] unused
    draw_pos: np.ndarray
    draw_end: np.ndarray
    heads: np.ndarray  # (slots, partitions): time_of_record's scratch (its merge's next row per partition)
    # scalars and configuration
    ints: np.ndarray
    floats: np.ndarray
    cfg_i: np.ndarray
    cfg_f: np.ndarray
    scale_s: np.ndarray
    levels: np.ndarray
    quantiles_s: np.ndarray
    # statistics folded in the loop: per tick interval, the integral of busy consumers and of records
    # in service (bin k covers [ticks[k-1], ticks[k]); the last bin what lies past the last tick)
    ticks: np.ndarray
    busy_area: np.ndarray
    in_service_area: np.ndarray


# -- the topic --------------------------------------------------------------------------------------


@njit(cache=True, inline="always")
def visible_end(st, p, now):  # type: ignore[no-untyped-def]
    """One past the last offset of partition p that has arrived by `now` (a record at `now` included)."""
    origin = st.origin[p]
    return origin + _first_after(st.times, st.position[p] - origin, st.end[p], now)


@njit(cache=True, inline="always")
def _first_after(times, lo, hi, now):  # type: ignore[no-untyped-def]
    """The first row in [lo, hi) of the sorted `times` later than `now` (hi if none). A galloping
    search from lo: what a fetch sees is usually a few records past its position, while the
    partition holds a whole arrival chunk ahead, and a plain binary search over that misses the
    cache at every step."""
    step = 1
    while lo + step <= hi and times[lo + step - 1] <= now:
        lo += step
        step *= 2
    hi = min(lo + step, hi)
    while lo < hi:  # times[lo - 1] <= now (or lo is the start); the answer lies in [lo, hi]
        mid = (lo + hi) >> 1
        if times[mid] <= now:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def lag(st, now):  # type: ignore[no-untyped-def]
    """Kafka's consumer lag at `now`: records arrived and not committed, over all partitions."""
    total = 0
    for p in range(st.origin.shape[0]):
        lo = st.committed[p] - st.origin[p]
        total += np.searchsorted(st.times[lo : st.end[p]], now, side="right")
    return total


@njit(cache=True, inline="always")
def time_of_record(st, s, k):  # type: ignore[no-untyped-def]
    """When the k-th record after the fetch positions (over slot s's partitions) arrives; inf if it
    is not appended yet. The partitions' times are sorted, so a k-step merge finds it."""
    n = st.owned_n[s]
    if k == 1:  # the common case (fetch.min.bytes = 1): the earliest next record, with no scratch array
        t = math.inf
        for i in range(n):
            p = st.owned[s, i]
            row = st.position[p] - st.origin[p]
            if row < st.end[p] and st.times[row] < t:
                t = st.times[row]
        return t
    heads = st.heads[s]  # a scratch row per slot: the loop allocates nothing (it runs without NRT)
    for i in range(n):
        p = st.owned[s, i]
        heads[i] = st.position[p] - st.origin[p]
    t = math.inf
    for _ in range(k):
        best = -1
        t = math.inf
        for i in range(n):
            p = st.owned[s, i]
            if heads[i] < st.end[p] and st.times[heads[i]] < t:
                t = st.times[heads[i]]
                best = i
        if best < 0:
            return math.inf
        heads[best] += 1
    return t


# -- the consumer's rules ---------------------------------------------------------------------------


@njit(cache=True, inline="always")
def start_fetch(st, s, now):  # type: ignore[no-untyped-def]
    """A fresh fetch sent at `now`: the broker answers by `now + fetch.max.wait.ms` at the latest."""
    st.sent_s[s] = now
    st.deadline_s[s] = now + st.cfg_f[C_FETCH_WAIT_S]
    fetch(st, s, now)


@njit(cache=True, inline="always")
def fetch(st, s, now):  # type: ignore[no-untyped-def]
    """The fetch in progress at `now`: the broker answers once `fetch_min_records` have arrived over
    the consumer's partitions, or at the deadline with at least one; a fetch that timed out empty
    was re-sent back to back. Answers with a poll, or sets when to look again."""
    if st.owned_n[s] == 0 or st.leaving[s]:
        st.phase[s] = OUTSIDE
        return
    available = 0
    for i in range(st.owned_n[s]):
        p = st.owned[s, i]
        available += visible_end(st, p, now) - st.position[p]
    min_records = st.cfg_i[C_MIN_RECORDS]
    deadline = st.deadline_s[s]
    if available >= min_records or (available > 0 and now >= deadline):
        poll(st, s, now)
        return
    if available == 0:
        first = time_of_record(st, s, 1)
        if first == math.inf:
            st.phase[s] = WAIT_DATA  # nothing appended yet: the feeder's wake continues the fetch
            return
        if first >= deadline:
            # Fetches that timed out empty were re-sent back to back: the one in progress when the
            # first record arrives started at sent + k * wait.
            wait_s = st.cfg_f[C_FETCH_WAIT_S]
            if wait_s > 0:
                k = math.floor((first - st.sent_s[s]) / wait_s)
                deadline = max(st.sent_s[s] + (k + 1) * wait_s, first)
            else:
                deadline = first
            st.deadline_s[s] = deadline
    wake_at = min(time_of_record(st, s, min_records), deadline)
    st.phase[s] = WAIT_TIMER
    st.next_s[s] = now + max(wake_at - now, 0.0)


@njit(cache=True, inline="always")
def poll(st, s, now):  # type: ignore[no-untyped-def]
    """Hand out at most `max_poll_records`, draining the owned partitions in a rotating order (one
    further each poll), and start scoring them as one batch."""
    budget = st.cfg_i[C_MAX_POLL]
    n = st.owned_n[s]
    first = st.cursor[s] % n
    st.cursor[s] += 1
    parts = 0
    for i in range(n):
        if budget == 0:
            break
        p = st.owned[s, (first + i) % n]
        end = min(visible_end(st, p, now), st.position[p] + budget)
        if end > st.position[p]:
            budget -= end - st.position[p]
            st.b_part[s, parts] = p
            st.b_from[s, parts] = st.position[p]
            st.b_to[s, parts] = end
            parts += 1
            st.position[p] = end
    size = st.cfg_i[C_MAX_POLL] - budget
    x = 0.0
    if st.cfg_i[C_DRAWS]:
        x = st.draws[s, st.draw_pos[s]]
        st.draw_pos[s] += 1
    st.b_n[s] = parts
    st.b_size[s] = size
    st.b_start[s] = now
    st.phase[s] = BUSY
    st.next_s[s] = now + service_s(st.cfg_i[C_FORM], st.scale_s, st.cfg_f, st.levels, st.quantiles_s, NO_SIZE_GRID,
                                     0.0, size, float(size), x)  # fmt: skip


@njit(cache=True, inline="always")
def commit(st, f, s, now, log_base, start_s, end_s, batch_size, replica, outcome):  # type: ignore[no-untyped-def]
    """The batch is scored at `now`: its records are folded into the statistics (`fold_scored`)
    or, with a request log, their rows written; the offsets committed (offsets = position, i.e.
    the batch's ends), and its service interval folded into the levels."""
    size = st.b_size[s]
    folding = f.ints[I_ON]
    for j in range(st.b_n[s]):
        p = st.b_part[s, j]
        lo = st.b_from[s, j] - st.origin[p]
        hi = st.b_to[s, j] - st.origin[p]
        if folding:
            fold_scored(f, st.ticks, st.times, lo, hi, st.b_start[s], now, size)
        for row in range(lo, hi if not folding else lo):
            r = st.ids[row] - log_base
            start_s[r] = st.b_start[s]
            end_s[r] = now
            batch_size[r] = size
            replica[r] = st.member_index[s]
            outcome[r] = COMPLETED
        st.committed[p] = st.b_to[s, j]
    add_interval(st.busy_area, st.ticks, st.b_start[s], now, 1.0)
    add_interval(st.in_service_area, st.ticks, st.b_start[s], now, float(size))
    st.ints[I_SCORED] += size
    st.b_n[s] = 0
    st.b_size[s] = 0


@njit(cache=True, inline="always")
def _short_of_draws(st, s):  # type: ignore[no-untyped-def]
    return st.cfg_i[C_DRAWS] and st.draw_pos[s] >= st.draw_end[s]


# Compiled without numba's reference counting (NRT): every read of one of the state's arrays inside
# the inlined rules took an atomic increment and decrement through a call (~1,400 call sites; under
# perf the two unnamed hot addresses, half the run). The loop allocates nothing (scratch rows live in
# the state) and Python holds every array across the call, so no reference needs counting; an
# allocation added here fails to compile rather than leak.
@njit(cache=True, _nrt=False)  # type: ignore[call-overload]  # a numba option its stubs do not list
def advance(st, f, now, stop_s, log_base, start_s, end_s, batch_size, replica, outcome):  # type: ignore[no-untyped-def]
    """Handle the wakes pending at `now`, then every consumer event up to `stop_s` in time order (one
    due at `stop_s` itself before the control event there: a lag read at a commit's time counts it).
    `f` is the statistics folded in the loop (fold.LoopFold). Returns RAN_TO_STOP (floats[F_AT]: the
    next event's time, after `stop_s`; inf if none) or, between two events, NEED_DRAWS / NOTIFY /
    DRAINED (ints[I_SLOT], floats[F_AT])."""
    slots = st.phase.shape[0]
    for s in range(slots):
        if not st.wake[s]:
            continue
        if _short_of_draws(st, s):
            st.ints[I_SLOT] = s
            return NEED_DRAWS
        st.wake[s] = 0
        phase = st.phase[s]
        if phase == OUTSIDE:
            start_fetch(st, s, now)
        elif WAIT_DATA <= phase <= WAIT_TIMER:  # in a fetch
            fetch(st, s, now)
    phases, next_s = st.phase, st.next_s  # bound once: numba counts references at each binding
    while True:
        s = -1
        t = math.inf
        for i in range(slots):
            phase = phases[i]
            if WAIT_TIMER <= phase <= BUSY and next_s[i] < t:  # a timer or a batch due
                t = next_s[i]
                s = i
        if s < 0 or t > stop_s:
            st.floats[F_AT] = t
            return RAN_TO_STOP
        if _short_of_draws(st, s):
            st.ints[I_SLOT] = s
            return NEED_DRAWS
        if st.phase[s] == WAIT_TIMER:
            fetch(st, s, t)
            continue
        commit(st, f, s, t, log_base, start_s, end_s, batch_size, replica, outcome)
        st.ints[I_SLOT] = s
        st.floats[F_AT] = t
        st.phase[s] = OUTSIDE
        if st.ints[I_SCORED] == st.ints[I_TARGET]:
            st.wake[s] = 1
            return DRAINED
        if st.notify[s]:
            st.wake[s] = 1  # its next fetch starts once Python has done the commit's duties
            return NOTIFY
        start_fetch(st, s, t)

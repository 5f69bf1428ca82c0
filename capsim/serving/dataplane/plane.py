"""The compiled data plane's state: numpy arrays in a NamedTuple (numba passes it to the kernel
as one argument), allocated and grown by Python.

Per-replica arrays are indexed by *slot*: a replica takes a free slot when it becomes ready and
gives it back when it has drained, so their size follows the fleet's peak, not the number of
replicas ever started. Arrays are grown (copied into larger ones) between kernel calls when the
kernel asks for room.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from capsim.serving.dataplane import layout
from capsim.serving.dataplane.balancers import BALANCERS

DRAW_CHUNK = 4096
"""Draws per refill, the chunk size of capsim.rng.buffered (the SimPy data plane's samplers, which
this loop reproduced number for number)."""


class Plane(NamedTuple):
    """Every array the kernel reads or writes, except the request log and the arrival chunk."""

    ints: np.ndarray
    floats: np.ndarray
    cfg_i: np.ndarray
    cfg_f: np.ndarray
    # per slot
    slot_replica: np.ndarray  # replica index (its id in the request log)
    slot_state: np.ndarray  # kernel.FREE / READY / DRAINING / DRAINED_SLOT
    q_ids: np.ndarray  # (slots, queue capacity): ring buffers of request ids
    q_head: np.ndarray
    q_len: np.ndarray
    idle: np.ndarray  # idle executors
    in_service: np.ndarray  # requests in batches being served
    loads: np.ndarray  # queued + in service (what the balancer reads)
    forming: np.ndarray  # 1 while a batch waits for its max-wait timer
    forming_token: np.ndarray  # id of that timer (older timers are stale)
    draws: np.ndarray  # (slots, DRAW_CHUNK + instances): the service-time stream's next draws
    draw_pos: np.ndarray
    draw_end: np.ndarray  # draws[s, draw_pos:draw_end] are still unused
    b_ids: np.ndarray  # (slots, instances, max batch): the requests of each executor's batch
    b_size: np.ndarray  # (slots, instances): 0 = idle executor
    b_start: np.ndarray
    ready: np.ndarray  # the balancer's slots, in the order of RealtimeFleet.ready
    drained_slot: np.ndarray  # drained reports of the last call
    drained_s: np.ndarray
    q_entered: np.ndarray  # (slots, queue capacity): when each queued request joined the queue
    fe_free: np.ndarray  # (slots, front-end workers): when each front-end worker is next free
    fe_inside: np.ndarray  # requests in each replica's front end
    fe_draws: np.ndarray  # (slots, DRAW_CHUNK + 1): the front-end stream's next times (seconds)
    fe_pos: np.ndarray
    fe_end: np.ndarray
    late_draws: np.ndarray  # (slots, DRAW_CHUNK + 1): how late each next batching timer fires (seconds)
    late_pos: np.ndarray
    late_end: np.ndarray
    # the event heap
    h_time: np.ndarray
    h_seq: np.ndarray
    h_kind: np.ndarray
    h_slot: np.ndarray
    h_aux: np.ndarray
    # service times and balancer draws
    scale_s: np.ndarray
    levels: np.ndarray
    quantiles_s: np.ndarray
    lb_draws: np.ndarray
    size_grid: np.ndarray  # a profile's size axis (BatchTimeTable.size_grid; [1.0] without one)


class LogColumns(NamedTuple):
    """The request log's columns the kernel writes (capsim.metrics.request_log.RequestLog)."""

    arrival_s: np.ndarray
    start_s: np.ndarray
    end_s: np.ndarray
    replica: np.ndarray
    batch_size: np.ndarray
    outcome: np.ndarray
    request_size: np.ndarray  # each request's size (workload.size; 1 without it)


def _grown(old: np.ndarray, shape: tuple[int, ...], fill: float | int) -> np.ndarray:
    new = np.full(shape, fill, dtype=old.dtype)
    new[tuple(slice(0, n) for n in old.shape)] = old
    return new


def allocate(
    cfg_i: np.ndarray,
    cfg_f: np.ndarray,
    scale_s: np.ndarray,
    levels: np.ndarray,
    quantiles_s: np.ndarray,
    slots: int = 8,
    queue_capacity: int = 256,
    heap_capacity: int = 256,
    size_grid: np.ndarray | None = None,
) -> Plane:
    """A fresh plane with every slot free."""
    instances, max_batch = int(cfg_i[layout.C_INSTANCES]), int(cfg_i[layout.C_MAX_BATCH])
    fe_workers = max(int(cfg_i[layout.C_FRONTEND]), 1)
    floats = np.zeros(layout.N_FLOATS)
    floats[layout.F_NEXT] = np.inf
    ints = np.zeros(layout.N_INTS, dtype=np.int64)
    ints[layout.I_IN_LOOP] = 1  # the first pump starts the run of arrivals (arrival lookahead)
    i64 = np.int64
    return Plane(
        ints=ints,
        floats=floats,
        cfg_i=cfg_i,
        cfg_f=cfg_f,
        slot_replica=np.full(slots, -1, dtype=i64),
        slot_state=np.zeros(slots, dtype=i64),
        q_ids=np.zeros((slots, queue_capacity), dtype=i64),
        q_head=np.zeros(slots, dtype=i64),
        q_len=np.zeros(slots, dtype=i64),
        idle=np.zeros(slots, dtype=i64),
        in_service=np.zeros(slots, dtype=i64),
        loads=np.zeros(slots, dtype=i64),
        forming=np.zeros(slots, dtype=i64),
        forming_token=np.zeros(slots, dtype=i64),
        draws=np.zeros((slots, DRAW_CHUNK + instances)),
        draw_pos=np.zeros(slots, dtype=i64),
        draw_end=np.zeros(slots, dtype=i64),
        b_ids=np.zeros((slots, instances, max_batch), dtype=i64),
        b_size=np.zeros((slots, instances), dtype=i64),
        b_start=np.zeros((slots, instances)),
        ready=np.zeros(slots, dtype=i64),
        drained_slot=np.zeros(slots, dtype=i64),
        drained_s=np.zeros(slots),
        q_entered=np.zeros((slots, queue_capacity)),
        fe_free=np.zeros((slots, fe_workers)),
        fe_inside=np.zeros(slots, dtype=i64),
        fe_draws=np.zeros((slots, DRAW_CHUNK + 1)),
        fe_pos=np.zeros(slots, dtype=i64),
        fe_end=np.zeros(slots, dtype=i64),
        late_draws=np.zeros((slots, DRAW_CHUNK + 1)),
        late_pos=np.zeros(slots, dtype=i64),
        late_end=np.zeros(slots, dtype=i64),
        h_time=np.zeros(heap_capacity),
        h_seq=np.zeros(heap_capacity, dtype=i64),
        h_kind=np.zeros(heap_capacity, dtype=i64),
        h_slot=np.zeros(heap_capacity, dtype=i64),
        h_aux=np.zeros(heap_capacity, dtype=i64),
        scale_s=scale_s,
        levels=levels,
        quantiles_s=quantiles_s,
        lb_draws=np.zeros(DRAW_CHUNK + max(b.draws_per_pick for b in BALANCERS.values())),
        size_grid=np.ones(1) if size_grid is None else size_grid,
    )


def with_more_slots(p: Plane) -> Plane:
    """The same plane with twice the slots (the new ones free)."""
    slots = 2 * p.slot_state.shape[0]
    grow = {
        name: _grown(getattr(p, name), (slots, *getattr(p, name).shape[1:]), fill)
        for name, fill in (
            ("slot_replica", -1), ("slot_state", layout.FREE), ("q_ids", 0), ("q_head", 0), ("q_len", 0), ("idle", 0),
            ("in_service", 0), ("loads", 0), ("forming", 0), ("forming_token", 0), ("draws", 0.0),
            ("draw_pos", 0), ("draw_end", 0), ("b_ids", 0), ("b_size", 0), ("b_start", 0.0), ("ready", 0),
            ("drained_slot", 0), ("drained_s", 0.0), ("q_entered", 0.0), ("fe_free", 0.0), ("fe_inside", 0),
            ("fe_draws", 0.0), ("fe_pos", 0), ("fe_end", 0), ("late_draws", 0.0), ("late_pos", 0), ("late_end", 0),
        )
    }  # fmt: skip
    return p._replace(**grow)


def with_room(p: Plane) -> Plane:
    """The same plane with twice the queue capacity (rings unrolled to start at 0) and twice the
    heap capacity where either is nearly full."""
    ints = p.ints
    if ints[layout.I_LOW_ROOM]:
        slots, cap = p.q_ids.shape
        new_q = np.zeros((slots, 2 * cap), dtype=p.q_ids.dtype)
        new_entered = np.zeros((slots, 2 * cap))
        for s in range(slots):
            length = int(p.q_len[s])
            if length:
                order = (int(p.q_head[s]) + np.arange(length)) % cap
                new_q[s, :length] = p.q_ids[s, order]
                new_entered[s, :length] = p.q_entered[s, order]
        p.q_head[:] = 0
        ints[layout.I_LOW_ROOM] = 0
        p = p._replace(q_ids=new_q, q_entered=new_entered)
    if ints[layout.I_HEAP_N] + int(p.cfg_i[layout.C_INSTANCES]) + 2 > p.h_time.shape[0]:
        size = 2 * p.h_time.shape[0]
        p = p._replace(**{name: _grown(getattr(p, name), (size,), 0) for name in
                          ("h_time", "h_seq", "h_kind", "h_slot", "h_aux")})  # fmt: skip
    return p


def refilled(buffer: np.ndarray, pos: int, end: int, fresh: np.ndarray) -> int:
    """Move a draw buffer's unused draws (`buffer[pos:end]`) to its front and append `fresh` after
    them, so the draws keep their order across chunks; returns the new end (its position is 0)."""
    left = end - pos
    buffer[:left] = buffer[pos:end]
    buffer[left : left + fresh.size] = fresh
    return left + fresh.size


def next_event_s(p: Plane) -> float:
    """When the kernel's next event is due (inf: none): the heap's first or the arrival timer; in a
    run of arrivals (which goes on at once), now."""
    ints = p.ints
    if ints[layout.I_IN_LOOP]:
        return float(p.floats[layout.F_CLOCK])
    t_heap = float(p.h_time[0]) if ints[layout.I_HEAP_N] > 0 else np.inf
    return min(t_heap, float(p.floats[layout.F_TIMER])) if ints[layout.I_TIMER_ON] else t_heap

"""The real-time fleet with its data plane compiled: RealtimeFleet's control plane (replica
lifecycle, cold starts, draining, the activator, billing, metrics for autoscalers) runs unchanged on
the SimPy kernel, and every per-request and per-batch event runs in capsim.serving.dataplane.kernel.

The two meet through one SimPy callback, the *pump*: it runs the kernel over every data-plane event
before the SimPy queue's next event (a control event: an autoscaler tick, a replica becoming
ready, the progress clock), then schedules itself at the kernel's next event. This is the arrival
lookahead extended to every data-plane event: nothing in the control
plane can happen in between, so handling them in one compiled loop changes no result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import simpy

from capsim.metrics.request_log import RequestLog
from capsim.rng import RandomStreams
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.dataplane import kernel as k
from capsim.serving.dataplane import layout
from capsim.serving.dataplane.balancers import BALANCERS
from capsim.serving.dataplane.fold import RequestFold
from capsim.serving.dataplane.plane import (
    DRAW_CHUNK,
    LogColumns,
    Plane,
    allocate,
    next_event_s,
    refilled,
    with_more_slots,
    with_room,
)
from capsim.serving.dataplane.rules import BALANCER_CODES
from capsim.serving.fleet import RealtimeFleet, ReplicaHandle

if TYPE_CHECKING:
    from capsim.hardware.sharing import GpuSharing
    from capsim.scenario.schema import RealtimeServing
    from capsim.workload.size import SizeSampler


def compiled_version(kernel: Callable[..., int]) -> Callable[..., int]:
    """`kernel`'s one compiled version, called without numba's dispatcher. The dispatcher types
    every argument on every call, and typing the plane (a NamedTuple of ~40 arrays), the log's
    columns and the fold costs ~6.8 us of the ~7.4 us a call takes from Python: ~0.7 s of CPU in a
    24-hour day's ~110k pump calls (measured on a shared 2-core VM). The pump always passes the
    same types (arrays this module allocates with fixed dtypes and layouts, a float stop time, an
    int and a float), so the version the first call loaded is the one every later call would pick.
    With several versions compiled, or no compiled ones (NUMBA_DISABLE_JIT), the dispatcher stays."""
    overloads = getattr(kernel, "overloads", {})
    if len(overloads) != 1:
        return kernel
    return next(iter(overloads.values())).entry_point


class KernelReplica:
    """A replica whose front end, queue, batcher and executors live in the compiled plane at `slot`:
    the handle (capsim.serving.fleet.ReplicaHandle) RealtimeFleet's lifecycle code holds."""

    def __init__(self, fleet: CompiledFleet, index: int, slot: int) -> None:
        self.fleet = fleet
        self.index = index
        self.slot = slot  # -1 once drained (the slot may serve another replica since)
        self.draining = False

    def queued_or_in_service(self) -> int:
        if self.slot < 0:
            return 0
        p = self.fleet.plane
        return int(p.q_len[self.slot] + p.in_service[self.slot] + p.fe_inside[self.slot])

    def start_draining(self, now: float) -> None:
        self.draining = True
        self.fleet.begin_draining(self, now)

    def expire(self, now: float) -> None:
        if self.slot >= 0:
            self.fleet.expire_slot(self.slot, now)

    def book_in_service(self) -> None:
        if self.slot >= 0:
            k.book_in_service(self.fleet.plane, self.fleet.columns, self.slot)

    def hand_over_queue(self) -> list[int]:
        if self.slot < 0:
            return []
        p = self.fleet.plane
        cap = p.q_ids.shape[1]
        order = (int(p.q_head[self.slot]) + np.arange(int(p.q_len[self.slot]))) % cap
        waiting = [int(i) for i in p.q_ids[self.slot, order]]
        self.fleet.hand_over_queue(self)
        return waiting


class CompiledFleet(RealtimeFleet):
    """RealtimeFleet whose requests and batches are handled by the compiled kernel."""

    def __init__(
        self,
        env: simpy.Environment,
        serving: RealtimeServing,
        service: ServiceTimeModel,
        streams: RandomStreams,
        log: RequestLog,
        fold: RequestFold,
        sizes: SizeSampler | None = None,
        sharing: GpuSharing | None = None,
    ) -> None:
        batching = serving.batching
        table = service.batch_time_table(batching.max_batch_size)
        if table is None:
            raise ValueError(f"service kind {getattr(service, 'kind', '?')} has no compiled form")
        self._draw = table.draw
        cfg_i = np.zeros(layout.N_CFG_I, dtype=np.int64)
        cfg_i[layout.C_INSTANCES] = serving.instances_per_replica
        cfg_i[layout.C_MAX_BATCH] = batching.max_batch_size
        cfg_i[layout.C_CAPACITY] = -1 if serving.queue_capacity is None else serving.queue_capacity
        cfg_i[layout.C_BALANCER] = BALANCER_CODES[serving.load_balancer]
        cfg_i[layout.C_FORM] = table.form
        cfg_i[layout.C_DRAWS] = table.draw is not None
        cfg_i[layout.C_HAS_TIMEOUT] = serving.timeout_ms is not None
        cfg_i[layout.C_LB_DRAWS] = BALANCERS[serving.load_balancer].draws_per_pick
        frontend = serving.frontend
        cfg_i[layout.C_FRONTEND] = frontend.workers if frontend is not None else 0
        cfg_i[layout.C_FE_DRAWS] = frontend is not None and frontend.cv > 0
        self._late_window = frontend if frontend is not None and frontend.window_late_quantiles_ms else None
        cfg_i[layout.C_WINDOW_LATE] = self._late_window is not None
        self._sizes = sizes  # workload.size: each arrival's size, written into its log row
        cfg_i[layout.C_SIZED] = sizes is not None
        cfg_i[layout.C_SIZE_RULE] = table.size_rule
        cfg_i[layout.C_PER_GPU] = sharing.replicas_per_gpu if sharing is not None else 0  # rules.interference_factor
        cfg_f = np.zeros(layout.N_CFG_F)
        cfg_f[layout.C_MAX_WAIT_S] = batching.max_wait_ms / 1000.0
        cfg_f[layout.C_TIMEOUT_S] = serving.timeout_ms / 1000.0 if serving.timeout_ms is not None else math.inf
        cfg_f[layout.C_OVERHEAD_S] = serving.overhead_ms / 1000.0
        cfg_f[layout.C_LOC] = table.loc
        cfg_f[layout.C_SIGMA] = table.sigma
        cfg_f[layout.C_FE_FIXED_S] = frontend.per_request_ms / 1000.0 if frontend is not None else 0.0
        cfg_f[layout.C_SIZE_S] = table.size_s
        cfg_f[layout.C_ALPHA] = sharing.slowdown_per_busy_corunner if sharing is not None else 0.0
        self._fe_lognormal = frontend.lognormal_mu_sigma() if frontend is not None and frontend.cv > 0 else None
        self._fe_rng: dict[int, np.random.Generator] = {}
        self._late_rng: dict[int, np.random.Generator] = {}
        self.plane: Plane = allocate(cfg_i, cfg_f, table.scale_s, table.levels, table.quantiles_s,
                                     size_grid=table.size_grid)  # fmt: skip
        self._slot_rng: dict[int, np.random.Generator] = {}
        self._slot_handle: dict[int, KernelReplica] = {}
        self._arr_t = np.zeros(0)
        self._arr_id = np.zeros(0, dtype=np.int64)
        self._pump_at = math.inf
        self._pump_token = 0
        self._advance: Callable[..., int] | None = None  # k.advance's compiled version, once loaded
        self._pump_event: simpy.Event | None = None
        # Superseded pumps still in the SimPy queue: they are not events of the model, so the next
        # event the kernel may run up to is read past them (else a run of arrivals would stop early
        # and take timers SimPy would not take, rounding its clock differently).
        self._stale_pumps: set[simpy.Event] = set()
        self._log_ref = log
        self.fold = fold  # where the loop folds finished requests when it keeps no rows for them
        self.columns = self._log_columns()
        super().__init__(env, serving, service, streams, log)
        if BALANCERS[serving.load_balancer].draws_per_pick:
            self._lb_rng = streams.stream("balancer")
            self._refill_balancer()

    # -- shared counters live in the plane ------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests routed past the cache and not finished."""
        return int(self.plane.ints[layout.I_PENDING])

    @pending.setter
    def pending(self, value: int) -> None:
        self.plane.ints[layout.I_PENDING] = value

    @property
    def arrived(self) -> int:
        """Requests routed past the cache, cumulative (the rps metric)."""
        return int(self.plane.ints[layout.I_ARRIVED])

    @arrived.setter
    def arrived(self, value: int) -> None:
        self.plane.ints[layout.I_ARRIVED] = value

    def _log_columns(self) -> LogColumns:
        log = self._log_ref
        return LogColumns(log.arrival_s, log.start_s, log.end_s, log.replica, log.batch_size, log.outcome,
                          log.request_size)  # fmt: skip

    # The kernel keeps the integrals autoscalers read (concurrency, busy executors); the activator's
    # Python code changes concurrency too. They are copied across around every kernel call.

    def _live_to_plane(self) -> None:
        if self.live is not None:
            f = self.plane.floats
            for at, integral in ((layout.F_CONC_V, self.live.concurrency), (layout.F_BUSY_V, self.live.busy)):
                f[at], f[at + 1], f[at + 2] = integral.value, integral.last_s, integral.area

    def _live_from_plane(self) -> None:
        if self.live is not None:
            f = self.plane.floats
            for at, integral in ((layout.F_CONC_V, self.live.concurrency), (layout.F_BUSY_V, self.live.busy)):
                integral.value, integral.last_s, integral.area = float(f[at]), float(f[at + 1]), float(f[at + 2])

    # -- membership -------------------------------------------------------------------------------

    def _new_replica(self) -> ReplicaHandle:
        p = self.plane
        free = np.flatnonzero(p.slot_state == layout.FREE)
        if free.size == 0:
            self.plane = p = with_more_slots(p)
            free = np.flatnonzero(p.slot_state == layout.FREE)
        slot = int(free[0])
        index = len(self.all_replicas)
        p.slot_replica[slot] = index
        p.slot_state[slot] = layout.READY
        p.q_head[slot] = p.q_len[slot] = p.in_service[slot] = p.loads[slot] = p.forming[slot] = 0
        p.idle[slot] = self.config.instances
        p.b_size[slot] = 0
        p.draw_pos[slot] = p.draw_end[slot] = p.fe_pos[slot] = p.fe_end[slot] = p.late_pos[slot] = p.late_end[slot] = 0
        if self._draw is not None:
            # The replica's own stream, drawn in chunks.
            self._slot_rng[slot] = self._streams.stream(f"service/replica-{index}")
            self._refill_slot(slot)
        p.fe_free[slot] = 0.0
        p.fe_inside[slot] = 0
        if self._fe_lognormal is not None:
            # The front end's stream and chunks, as FrontEndSpec.sampler draws them.
            self._fe_rng[slot] = self._streams.stream(f"frontend/replica-{index}")
            self._refill_frontend(slot)
        if self._late_window is not None:
            # Its own stream: the lateness changes no other draw.
            self._late_rng[slot] = self._streams.stream(f"window-late/replica-{index}")
            self._refill_late(slot)
        replica = self._slot_handle[slot] = KernelReplica(self, index, slot)
        self.all_replicas.append(replica)
        return replica

    def _rebuild_loads(self) -> None:
        p = self.plane
        slots = [self._slot_of(r) for r in self.ready]
        p.ready[: len(slots)] = slots
        p.ints[layout.I_N_READY] = len(slots)

    def _change_plane(self, kernel_call: Callable[..., object], *args: object) -> None:
        """Run one of the kernel's entry points for the control plane (the live integrals and the
        log's base carried across), then serve what it leaves for Python and re-arm the pump."""
        self._live_to_plane()
        self.plane.ints[layout.I_BASE] = self.log.base
        kernel_call(self.plane, *args)
        self._live_from_plane()
        self._settle()

    def begin_draining(self, replica: KernelReplica, now: float) -> None:
        """`replica` has left the balancer: it finishes its work, then reports drained."""
        self._change_plane(k.begin_draining, self.columns, replica.slot, now)

    def hand_over_queue(self, replica: KernelReplica) -> None:
        """`replica` gives up its queued requests (the caller re-routes them)."""
        self._change_plane(k.hand_over_queue, replica.slot, self.env.now)

    def expire_slot(self, slot: int, now: float) -> None:
        """Time out the queued requests of `slot` whose deadline has passed at `now`."""
        if self.config.timeout_s is not None:
            self._change_plane(k.expire_slot, self.columns, slot, now)

    def _report_drained(self) -> None:
        p = self.plane
        reports = [(int(p.drained_slot[i]), float(p.drained_s[i])) for i in range(int(p.ints[layout.I_DRAINED_N]))]
        p.ints[layout.I_DRAINED_N] = 0
        for slot, t in reports:
            replica = self._slot_handle.pop(slot)
            self._slot_rng.pop(slot, None)
            self._fe_rng.pop(slot, None)
            self._late_rng.pop(slot, None)
            p.slot_state[slot] = layout.FREE
            replica.slot = -1
            self._drained(replica, t)

    # -- the pump ---------------------------------------------------------------------------------

    def start(self, chunks: Iterator[np.ndarray]) -> None:
        """Begin feeding arrivals (numpy chunks of arrival times, drawn lazily) into the fleet."""
        self._chunks = chunks
        self._schedule_pump(self.env.now)

    def _schedule_pump(self, t: float) -> None:
        # Only the latest pump is live: a new one is scheduled only earlier than the pending one,
        # so the live pump is always the earliest, and later (stale) ones do nothing when they fire.
        if self._pump_event is not None and self._pump_at < math.inf:
            self._stale_pumps.add(self._pump_event)
        self._pump_at = t
        self._pump_token += 1
        self._pump_event = self.env.timeout(max(t - self.env.now, 0.0), self._pump_token)
        self._pump_event.callbacks.append(self._pump)

    def _arm_pump(self) -> None:
        t = next_event_s(self.plane)
        if t < self._pump_at:
            self._schedule_pump(t)

    def _next_model_event_s(self) -> float:
        """The SimPy queue's next event that is not a superseded pump."""
        env = self.env
        if not self._stale_pumps:
            return env.peek()
        queue = env._queue  # (SimPy's heap of (time, priority, id, event); read, never changed)
        return min((entry[0] for entry in queue if entry[3] not in self._stale_pumps), default=math.inf)

    def _pump(self, event: simpy.Event) -> None:
        if event.value != self._pump_token:
            self._stale_pumps.discard(event)
            return
        self._pump_at = math.inf
        advance = self._advance
        if advance is None:  # the first pump goes through numba's dispatcher (it loads the loop)
            advance = k.advance
            self._advance = compiled_version(k.advance)
        while True:
            self._live_to_plane()
            self.plane.ints[layout.I_BASE] = self.log.base
            stop_s = self._next_model_event_s()
            status = advance(self.plane, self.columns, self.fold, self._arr_t, self._arr_id, stop_s, -1, 0.0)
            self._live_from_plane()
            if status == layout.RAN_TO_STOP:
                break
            self._handle(status)
        self._finished(0)
        self._arm_pump()

    def _handle(self, status: int) -> None:
        """Do what the kernel asked for (it stopped between two events)."""
        p = self.plane
        if status == layout.NEED_ARRIVALS:
            self._load_arrivals()
        elif status == layout.NEED_DRAWS:
            self._refill_low_buffers()
        elif status == layout.NEED_ROOM:
            self.plane = with_room(p)
        elif status == layout.DRAINED:
            self._report_drained()
        elif status == layout.NO_READY:
            self._hold_in_activator(int(p.ints[layout.I_AUX]), float(p.floats[layout.F_AUX]))

    def _serve_needs(self) -> None:
        while (status := k.needs_python(self.plane)) >= 0:
            self._handle(status)

    def _settle(self) -> None:
        """After Python changed the plane: serve whatever it needs now, then re-arm the pump."""
        self._serve_needs()
        self._finished(0)
        self._arm_pump()

    def _refill_low_buffers(self) -> None:
        """Refill every draw buffer that runs low. Each buffer reads its own stream, so when it is
        refilled changes no number it holds, only how far ahead it is drawn."""
        p = self.plane
        instances = self.config.instances
        for slot in self._slot_handle:
            if slot in self._slot_rng and p.draw_end[slot] - p.draw_pos[slot] < instances:
                self._refill_slot(slot)
            if slot in self._fe_rng and p.fe_end[slot] - p.fe_pos[slot] < 1:
                self._refill_frontend(slot)
            if slot in self._late_rng and p.late_end[slot] - p.late_pos[slot] < 1:
                self._refill_late(slot)
        if p.ints[layout.I_LB_END] - p.ints[layout.I_LB_POS] < p.cfg_i[layout.C_LB_DRAWS]:
            self._refill_balancer()
        p.ints[layout.I_LOW_DRAWS] = 0

    def _refill_slot(self, slot: int) -> None:
        p = self.plane
        assert self._draw is not None
        fresh = getattr(self._slot_rng[slot], self._draw)(DRAW_CHUNK)
        p.draw_end[slot] = refilled(p.draws[slot], int(p.draw_pos[slot]), int(p.draw_end[slot]), fresh)
        p.draw_pos[slot] = 0

    def _refill_frontend(self, slot: int) -> None:
        p = self.plane
        assert self._fe_lognormal is not None
        fresh = self._fe_rng[slot].lognormal(*self._fe_lognormal, DRAW_CHUNK)
        p.fe_end[slot] = refilled(p.fe_draws[slot], int(p.fe_pos[slot]), int(p.fe_end[slot]), fresh)
        p.fe_pos[slot] = 0

    def _refill_late(self, slot: int) -> None:
        p = self.plane
        assert self._late_window is not None
        fresh = self._late_window.window_late_s(self._late_rng[slot], DRAW_CHUNK)
        p.late_end[slot] = refilled(p.late_draws[slot], int(p.late_pos[slot]), int(p.late_end[slot]), fresh)
        p.late_pos[slot] = 0

    def _refill_balancer(self) -> None:
        ints = self.plane.ints
        pos, end = int(ints[layout.I_LB_POS]), int(ints[layout.I_LB_END])
        ints[layout.I_LB_END] = refilled(self.plane.lb_draws, pos, end, self._lb_rng.random(DRAW_CHUNK))
        ints[layout.I_LB_POS] = 0

    def _load_arrivals(self) -> None:
        p = self.plane
        for times in self._chunks:
            first_id = self.log.append_arrivals(times, keep_recent=False)
            if self._sizes is not None:  # every arrival drawn a size, cache hits too: the draws follow arrivals
                row = first_id - self.log.base
                self.log.request_size[row : row + times.size] = self._sizes.draw(times.size)
            if self.serving.cache.hit_ratio > 0:
                miss = self._answer_cache_hits(first_id, times)
                ids = np.flatnonzero(miss) + first_id
                times = times[miss]
            else:
                ids = np.arange(first_id, first_id + times.size, dtype=np.int64)
            self.columns = self._log_columns()  # appending may have moved or grown the log
            if ids.size:
                self._arr_t = np.ascontiguousarray(times, dtype=np.float64)
                self._arr_id = ids.astype(np.int64, copy=False)
                p.ints[layout.I_ARR_POS], p.ints[layout.I_ARR_N] = 0, ids.size
                return
        self._arr_t = np.zeros(0)
        self._arr_id = np.zeros(0, dtype=np.int64)
        p.ints[layout.I_ARR_POS] = p.ints[layout.I_ARR_N] = 0
        p.ints[layout.I_ARRIVALS_DONE] = 1
        self.arrivals_done = True

    def _route(self, request_id: int, t: float) -> None:
        # The activator hands a request over (RealtimeFleet._flush_buffer).
        self._serve_needs()  # the kernel routes only with its buffers ready
        self._change_plane(k.advance, self.columns, self.fold, self._arr_t, self._arr_id, math.inf, request_id, t)

    # -- observation ------------------------------------------------------------------------------

    def _slot_of(self, replica: ReplicaHandle) -> int:
        assert isinstance(replica, KernelReplica)
        return replica.slot

    def in_flight_now(self) -> int:
        p = self.plane
        slots = [self._slot_of(r) for r in (*self.ready, *self.draining)]
        return int(p.q_len[slots].sum() + p.in_service[slots].sum() + p.fe_inside[slots].sum()) + len(self.buffer)

    def sample(self) -> dict[str, float]:
        now = self.env.now
        self.expire_buffer(now)
        if self.config.timeout_s is not None:
            for replica in (*self.ready, *self.draining):
                replica.expire(now)
        # Every queued request is at a ready or draining replica: a drained or free slot's queue is empty.
        queued = len(self.buffer) + int(self.plane.q_len.sum())
        live = self.live
        assert live is not None  # sampled only by autoscalers, which keep live metrics
        return {"concurrency": live.concurrency.area_at(now), "busy": live.busy.area_at(now),
                "queue": float(queued), "arrivals": float(self.arrived)}  # fmt: skip

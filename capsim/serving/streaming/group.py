"""The consumer group's control plane: membership, the rebalances that every membership change
causes, the topic's feeder and the pump that advances the compiled data plane
(capsim/serving/streaming/kernel.py: fetches, polls, scoring, commits) up to each control event.
docs/model.md ("Streaming") states the rules.

A consumer (its rules are the kernel's `fetch`, `poll` and `commit`):
  1. fetches from its partitions: the broker answers as soon as `fetch_min_records` have arrived
     across them, or when `fetch_max_wait_ms` has passed since the fetch was sent with at least one
     record there (a fetch that times out empty is sent again at once);
  2. takes at most `max_poll_records`, draining partitions in a rotating order (one further each poll);
  3. scores them as one batch (the shared service-time model), then commits (offsets = position).
A membership change (a consumer ready after its cold start, or one asked to leave) rebalances the
group: eager stops every member after its current batch for the pause; cooperative pauses only the
partitions that change owner, from their old owner's commit. A partition is never fetched by two
members, and a new owner starts at the committed offset, which equals the position because owners
commit before giving a partition up: no event is lost or scored twice.

Where the two planes meet: SimPy holds every control event (arrival chunks, cold starts, pauses,
KEDA, samplers); the pump, a SimPy process, runs the kernel up to the next of them (`env.peek()`),
and comes back at the time a consumer's commit has rebalance duties (NOTIFY) so that they run at
that time on the SimPy clock. Python tells the kernel of a change by syncing the member's partitions
and setting its wake flag; the kernel looks at woken consumers first when it is next advanced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import simpy

from capsim.metrics.request_log import COLUMNS, Columns, RequestLog
from capsim.servicetime.base import ServiceTimeModel
from capsim.serving.dataplane import layout
from capsim.serving.dataplane.plane import DRAW_CHUNK
from capsim.serving.pool import ColdStarter, PoolLevels
from capsim.serving.streaming import kernel
from capsim.serving.streaming.assignor import range_assignment, round_robin_assignment, sticky_assignment
from capsim.serving.streaming.fold import I_ON, LoopFold, add_interval
from capsim.serving.streaming.kernel import StreamState
from capsim.serving.streaming.slots import refill_draws, with_more_slots
from capsim.serving.streaming.spec import StreamingServing
from capsim.serving.streaming.topic import Topic


class Consumer:
    """One member of the group (one pod running the model); its poll loop is a slot of the kernel."""

    __slots__ = ("_group", "index", "leaving", "owned", "rng", "slot")

    def __init__(self, group: ConsumerGroup, index: int, rng: np.random.Generator) -> None:
        self._group = group
        self.index = index
        self.rng = rng  # the service-time stream: one draw per batch, in 4,096-draw chunks
        self.owned: list[int] = []  # partitions it may fetch from now
        self.leaving = False
        self.slot = -1

    @property
    def batch(self) -> list[int] | None:
        """The partitions of the batch it is scoring; None when it is not scoring one."""
        st = self._group.state
        s = self.slot
        if s < 0 or st.phase[s] != kernel.BUSY:
            return None
        return [int(p) for p in st.b_part[s, : st.b_n[s]]]

    @property
    def batch_ids(self) -> np.ndarray:
        """The event ids of the batch it is scoring."""
        st = self._group.state
        s = self.slot
        return np.concatenate([st.ids[st.b_from[s, j] - st.origin[p] : st.b_to[s, j] - st.origin[p]]
                               for j, p in enumerate(st.b_part[s, : st.b_n[s]])])  # fmt: skip

    @property
    def batch_start_s(self) -> float:
        """When that batch started."""
        return float(self._group.state.b_start[self.slot])


class ConsumerGroup:
    """The topic, the group's members and offsets, and the rebalance protocol."""

    def __init__(
        self,
        env: simpy.Environment,
        serving: StreamingServing,
        service: ServiceTimeModel,
        make_rng: Callable[[int], np.random.Generator],
        partition_rng: np.random.Generator,
        starter_rng: np.random.Generator,
        log: RequestLog,
        ticks: np.ndarray,
        loop_fold: LoopFold,
    ) -> None:
        self.env = env
        self.serving = serving
        self.make_rng = make_rng
        self.partition_rng = partition_rng
        self.log = log
        self.loop_fold = loop_fold  # with it on, records are folded in the loop and the log keeps no rows
        self._rows = not loop_fold.ints[I_ON]
        self.topic = Topic(serving.partitions, with_ids=self._rows)
        self.state, self._draw = _allocate(serving, service, self.topic, ticks, slots=max(serving.consumers, 4))
        self.owner: list[Consumer | None] = [None] * serving.partitions
        self._transfer_token = [0] * serving.partitions
        self.members: list[Consumer] = []
        self.levels = PoolLevels(serving.consumers, serving.cold_start.warm_pool, ticks, self.state.busy_area,
                                 self.state.in_service_area)  # fmt: skip
        self.starter = ColdStarter(env, serving.cold_start, starter_rng, self.levels)
        self.desired = serving.consumers
        self.next_index = 0
        self.arrived = 0
        self.rebalances = 0
        self._eager_generation = 0
        self._eager_waiting: set[Consumer] = set()
        self._eager_pending = False
        self._pending_owner: dict[int, Consumer] = {}  # cooperative: partitions on their way to a new owner
        self._after_commit: dict[Consumer, list[tuple[int, int]]] = {}  # handovers waiting for a commit
        self._committing: dict[int, Consumer] = {}  # revoked partitions whose last batch is not committed yet
        self.paused_partition_s = 0.0  # partition-seconds during which a partition had no owner
        self._unowned_since: list[float | None] = [None] * serving.partitions
        self.drained = env.event()
        self._feeding = True
        for _ in range(serving.consumers):
            self._join(self._new_consumer(), initial=True)
        self._assign_all()
        env.process(self._pump())

    @property
    def records_scored(self) -> int:
        """Records scored and committed so far."""
        return int(self.state.ints[kernel.I_SCORED])

    # -- slots of the kernel ----------------------------------------------------------------------

    def _take_slot(self, consumer: Consumer) -> None:
        st = self.state
        free = np.flatnonzero(st.phase == kernel.FREE)
        if free.size == 0:
            self.state = st = with_more_slots(st, _PER_SLOT)  # the levels' bins are not per slot: kept
            free = np.flatnonzero(st.phase == kernel.FREE)
        s = int(free[0])
        consumer.slot = s
        st.phase[s] = kernel.OUTSIDE
        st.member_index[s] = consumer.index
        st.leaving[s] = 0
        st.owned_n[s] = 0
        st.cursor[s] = 0
        st.b_n[s] = 0
        st.draw_pos[s] = st.draw_end[s] = 0
        st.wake[s] = 1  # it starts its first fetch at once

    def _free_slot(self, consumer: Consumer) -> None:
        st = self.state
        st.phase[consumer.slot] = kernel.FREE
        st.wake[consumer.slot] = 0
        st.notify[consumer.slot] = 0
        consumer.slot = -1

    # -- membership ---------------------------------------------------------------------------

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(self, self.next_index, self.make_rng(self.next_index))
        self.next_index += 1
        return consumer

    def _join(self, consumer: Consumer, initial: bool = False) -> None:
        self.members.append(consumer)
        if not initial:
            self.levels.ready.set(self.env.now, len(self.members))
        self._take_slot(consumer)

    def scale_to(self, desired: int) -> None:
        """Start or stop consumers until `desired` are running or starting."""
        now = self.env.now
        self.desired = desired
        self.levels.desired.set(now, desired)
        running = [m for m in self.members if not m.leaving]
        current = len(running) + len(self.starter.pending)
        for _ in range(desired - current):
            self.starter.start(self._on_started)
        for _ in range(current - desired):
            if self.starter.cancel_one():
                continue
            # Kubernetes removes the newest pod first; it finishes its batch, commits and leaves.
            leaving = max((m for m in self.members if not m.leaving), key=lambda m: m.index)
            leaving.leaving = True
            self._membership_changed()

    def _on_started(self) -> None:
        self._join(self._new_consumer())
        self._membership_changed()

    def _leave(self, consumer: Consumer) -> None:
        """A leaving consumer has committed its last batch: it is gone (and no longer billed)."""
        now = self.env.now
        self.members.remove(consumer)
        self._free_slot(consumer)
        self.levels.ready.set(now, len(self.members))
        self.levels.billed.add(now, -1)

    def _membership_changed(self) -> None:
        self.rebalances += 1
        if self.serving.rebalance.protocol == "eager":
            self._eager_rebalance()
        else:
            self._cooperative_rebalance()

    # -- eager: stop the world --------------------------------------------------------------------

    def _eager_rebalance(self) -> None:
        """Revoke every partition; wait for every member to commit; pause; assign afresh."""
        self._eager_generation += 1
        now = self.env.now
        for p, owner in enumerate(self.owner):
            if owner is not None:
                self._set_owner(p, None, now)
        self._eager_waiting = set()
        for member in list(self.members):
            member.owned = []
            if member.batch is not None:
                self._eager_waiting.add(member)  # it rejoins once its batch is committed
            elif member.leaving:
                self._leave(member)
            self._wake(member)
        self._eager_pending = True
        if not self._eager_waiting:
            self._start_eager_pause()

    def _start_eager_pause(self) -> None:
        generation = self._eager_generation
        event = self.env.timeout(self.serving.rebalance.pause_s)
        event.callbacks.append(lambda _e: self._finish_eager(generation))

    def _finish_eager(self, generation: int) -> None:
        if generation != self._eager_generation:
            return  # a later membership change restarted the rebalance
        self._eager_pending = False
        self._assign_all()

    def _assign_all(self) -> None:
        members = [m.index for m in self.members if not m.leaving]
        assign = range_assignment if self.serving.assignor == "range" else round_robin_assignment
        if self.serving.rebalance.protocol == "cooperative":
            plan = sticky_assignment(self.serving.partitions, members, {})
        else:
            plan = assign(self.serving.partitions, members)
        by_index = {m.index: m for m in self.members}
        now = self.env.now
        for index, parts in plan.items():
            member = by_index[index]
            member.owned = list(parts)
            for p in parts:
                self._set_owner(p, member, now)
            self._wake(member)

    # -- cooperative: move only what must move ---------------------------------------------------

    def _cooperative_rebalance(self) -> None:
        now = self.env.now
        for member in list(self.members):
            if member.leaving and member.batch is None:
                self._leave_cooperatively(member)
        active = [m for m in self.members if not m.leaving]
        intended = self._intended_owner()
        current = {p: (o.index if o is not None else None) for p, o in enumerate(intended)}
        plan = sticky_assignment(self.serving.partitions, [m.index for m in active], current)
        by_index = {m.index: m for m in active}
        for index, parts in plan.items():
            target = by_index[index]
            for p in parts:
                if intended[p] is not target:
                    self._move(p, target, now)

    def _intended_owner(self) -> list[Consumer | None]:
        return [self._pending_owner.get(p, o) for p, o in enumerate(self.owner)]

    def _move(self, p: int, target: Consumer, now: float) -> None:
        """Revoke partition p from its owner; `target` gets it `pause_s` after the old owner's commit."""
        old = self.owner[p]
        self._transfer_token[p] += 1
        token = self._transfer_token[p]
        self._pending_owner[p] = target
        if old is not None:
            old.owned.remove(p)
            self._set_owner(p, None, now)
            self._wake(old)
        if old is not None and old.batch is not None and p in old.batch:
            self._committing[p] = old
        holder = self._committing.get(p)
        if holder is not None:
            # The handover waits for the commit of the batch that holds p (also when p moves
            # again before that commit).
            self._after_commit.setdefault(holder, []).append((p, token))
        else:
            self._hand_over_later(p, token)

    def _hand_over_later(self, p: int, token: int) -> None:
        """Give partition p to its pending owner `pause_s` from now (unless it moves again first)."""
        self.env.timeout(self.serving.rebalance.pause_s).callbacks.append(lambda _e: self._hand_over(p, token))

    def _hand_over(self, p: int, token: int) -> None:
        if token != self._transfer_token[p]:
            return  # moved again since: a later handover owns it
        target = self._pending_owner.pop(p)
        if target not in self.members or target.leaving:
            return
        target.owned.append(p)
        target.owned.sort()
        self._set_owner(p, target, self.env.now)
        self._wake(target)

    def _leave_cooperatively(self, member: Consumer) -> None:
        for p in list(member.owned):
            member.owned.remove(p)
            self._set_owner(p, None, self.env.now)
        self._leave(member)

    # -- ownership accounting ----------------------------------------------------------------------

    def _set_owner(self, p: int, owner: Consumer | None, now: float) -> None:
        if owner is None and self.owner[p] is not None:
            self._unowned_since[p] = now
        elif owner is not None and self._unowned_since[p] is not None:
            self.paused_partition_s += now - self._unowned_since[p]  # type: ignore[operator]
            self._unowned_since[p] = None
        if owner is not None:
            # A new owner fetches from the committed offset, as in Kafka: records handed out but not
            # committed by the old owner would be scored again (the protocol above prevents it).
            self.topic.position[p] = self.topic.committed[p]
        self.owner[p] = owner

    def unowned_partition_s(self, now: float) -> float:
        """Partition-seconds without an owner so far (rebalance pauses, or no consumer at all)."""
        open_s = sum(now - t for t in self._unowned_since if t is not None)
        return self.paused_partition_s + open_s

    def _wake(self, member: Consumer) -> None:
        """Tell the kernel of a change to the member's partitions: it looks again at once."""
        st, s = self.state, member.slot
        if s < 0:
            return
        st.owned_n[s] = len(member.owned)
        st.owned[s, : len(member.owned)] = member.owned
        st.wake[s] = 1

    def _sync_duties(self) -> None:
        """Flag the members whose next commit has rebalance duties (handovers, an eager rebalance
        waiting for it, leaving), and the leaving ones, for the kernel."""
        st = self.state
        cooperative = self.serving.rebalance.protocol == "cooperative"
        for member in self.members:
            s = member.slot
            st.leaving[s] = member.leaving
            st.notify[s] = (member in self._after_commit or member in self._eager_waiting
                            or (member.leaving and cooperative))  # fmt: skip

    # -- the topic -----------------------------------------------------------------------------------

    def feed(self, chunks: Iterator[np.ndarray]) -> Generator[simpy.Event, Any, None]:
        """Append each chunk of arrivals when the clock reaches its first event, keyed to partitions."""
        count = self.serving.partitions
        topic = self.topic
        for times in chunks:
            if times[0] > self.env.now:
                yield self.env.timeout(float(times[0]) - self.env.now)
            first_id = self.log.append_arrivals(times, keep_recent=False) if self._rows else self.arrived
            ids = np.arange(first_id, first_id + times.size, dtype=np.int64)
            if self.serving.partitioner == "round_robin":
                keys = ids % count
            else:
                keys = self.partition_rng.integers(0, count, size=times.size)
            if topic.append_chunk(keys, times, ids):
                self.state = self.state._replace(times=topic.times, ids=topic.ids)  # origin/end: updated in place
            self.arrived += times.size
            self.state.wake[self.state.phase != kernel.FREE] = 1  # a fetch waiting beyond the data looks again
        self._feeding = False
        self.state.ints[kernel.I_TARGET] = self.arrived
        self._check_drained()

    def lag(self, now_s: float) -> int:
        """Total consumer lag: arrived and not committed, over all partitions."""
        return int(kernel.lag(self.state, now_s))

    def _check_drained(self) -> None:
        if not self._feeding and self.records_scored == self.arrived and not self.drained.triggered:
            self.drained.succeed()

    # -- the pump: the data plane up to each control event ---------------------------------------------

    def _pump(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        log = self.log
        while True:
            if env.peek() <= env.now:
                yield env.timeout(0)  # control events due now go first (they may change the group)
                continue
            self._sync_duties()
            status = kernel.advance(self.state, self.loop_fold, env.now, env.peek(), log.base, log.start_s, log.end_s,
                                    log.batch_size, log.replica, log.outcome)  # fmt: skip
            st = self.state
            if status == kernel.NEED_DRAWS:
                self._refill(int(st.ints[kernel.I_SLOT]))
                continue
            at = float(st.floats[kernel.F_AT])
            if status == kernel.RAN_TO_STOP:
                # Every kernel event before the next control event is handled: sleep until that
                # one (the kernel's next event, at or after it, is handled when the pump wakes).
                yield env.timeout(env.peek() - env.now)
                continue
            yield env.timeout(at - env.now)  # the commit's time on the SimPy clock
            member = next(m for m in self.members if m.slot == st.ints[kernel.I_SLOT])
            self._after_batch(member)
            self._check_drained()

    def _refill(self, slot: int) -> None:
        assert self._draw is not None
        member = next(m for m in self.members if m.slot == slot)
        refill_draws(self.state, slot, member.rng, self._draw)

    def _after_batch(self, member: Consumer) -> None:
        """Rebalance duties that wait for this member's commit."""
        for p, token in self._after_commit.pop(member, []):
            self._committing.pop(p, None)
            self._hand_over_later(p, token)
        if member in self._eager_waiting:
            self._eager_waiting.discard(member)
            if member.leaving:
                self._leave(member)
            if not self._eager_waiting and self._eager_pending:
                self._start_eager_pause()
        elif member.leaving and self.serving.rebalance.protocol == "cooperative":
            self._leave_cooperatively(member)

    def fold_open_batches(self) -> None:
        """At the end of the run: the batches still being scored count as busy from their start on."""
        st = self.state
        for member in self.in_service_batches():
            s = member.slot
            add_interval(st.busy_area, st.ticks, st.b_start[s], math.inf, 1.0)
            add_interval(st.in_service_area, st.ticks, st.b_start[s], math.inf, float(st.b_size[s]))

    def unscored_blocks(self, max_rows: int = 1 << 20) -> Iterator[Columns]:
        """The records not scored by the end of the run, as request-log columns in blocks of at most
        `max_rows` (start, batch size and consumer set for those in a batch being scored): what the
        loop has not folded. Blocks keep the memory of a run that ends with a long lag small."""
        st, topic = self.state, self.topic
        batches = [(member, j) for member in self.in_service_batches() for j in range(int(st.b_n[member.slot]))]
        for p in range(self.serving.partitions):
            first = int(topic.committed[p])
            for lo in range(first, topic.log_end(p), max_rows):
                hi = min(lo + max_rows, topic.log_end(p))
                arrival = topic.times[lo - topic.origin[p] : hi - topic.origin[p]]
                cols: Columns = {name: np.full(arrival.size, fill, dtype=dtype)
                                 for name, (dtype, fill) in COLUMNS.items()}  # fmt: skip
                cols["arrival_s"] = arrival
                for member, j in batches:
                    s = member.slot
                    if st.b_part[s, j] != p:
                        continue
                    rows = slice(max(int(st.b_from[s, j]), lo) - lo, max(min(int(st.b_to[s, j]), hi) - lo, 0))
                    cols["start_s"][rows] = st.b_start[s]
                    cols["batch_size"][rows] = st.b_size[s]
                    cols["replica"][rows] = member.index
                yield cols

    def in_service_batches(self) -> list[Consumer]:
        """Members scoring a batch right now."""
        return [m for m in self.members if m.batch is not None]


def _allocate(serving: StreamingServing, service: ServiceTimeModel, topic: Topic, ticks: np.ndarray,
              slots: int) -> tuple[StreamState, str | None]:  # fmt: skip
    """The kernel's state for a group of up to `slots` members (grown when more join), and the
    numpy method that draws the service-time model's variates (None: it takes no draws)."""
    table = service.batch_time_table(serving.max_poll_records)
    if table is None:
        raise ValueError(f"service kind {getattr(service, 'kind', '?')} has no compiled form")
    table = table.without_sizes()  # (records / jobs have no sizes: each does one size unit)
    cfg_i = np.zeros(kernel.N_CFG_I, dtype=np.int64)
    cfg_i[kernel.C_MAX_POLL] = serving.max_poll_records
    cfg_i[kernel.C_MIN_RECORDS] = serving.fetch_min_records
    cfg_i[kernel.C_FORM] = table.form
    cfg_i[kernel.C_DRAWS] = table.draw is not None
    cfg_f = np.zeros(kernel.N_CFG_F)
    cfg_f[kernel.C_FETCH_WAIT_S] = serving.fetch_max_wait_ms / 1000.0
    cfg_f[layout.C_LOC] = table.loc
    cfg_f[layout.C_SIGMA] = table.sigma
    ints = np.zeros(kernel.N_INTS, dtype=np.int64)
    ints[kernel.I_TARGET] = -1
    parts = serving.partitions
    i64 = np.int64
    state = StreamState(
        times=topic.times, ids=topic.ids, origin=topic.origin, end=topic.end,
        position=topic.position, committed=topic.committed,
        phase=np.zeros(slots, dtype=i64), member_index=np.zeros(slots, dtype=i64), leaving=np.zeros(slots, dtype=i64),
        wake=np.zeros(slots, dtype=i64), notify=np.zeros(slots, dtype=i64),
        owned=np.zeros((slots, parts), dtype=i64), owned_n=np.zeros(slots, dtype=i64),
        cursor=np.zeros(slots, dtype=i64), next_s=np.zeros(slots), sent_s=np.zeros(slots),
        deadline_s=np.zeros(slots), b_part=np.zeros((slots, parts), dtype=i64),
        b_from=np.zeros((slots, parts), dtype=i64), b_to=np.zeros((slots, parts), dtype=i64),
        b_n=np.zeros(slots, dtype=i64), b_size=np.zeros(slots, dtype=i64), b_start=np.zeros(slots),
        draws=np.zeros((slots, 2 * DRAW_CHUNK)), draw_pos=np.zeros(slots, dtype=i64),
        draw_end=np.zeros(slots, dtype=i64), heads=np.zeros((slots, parts), dtype=i64),
        ints=ints, floats=np.zeros(kernel.N_FLOATS), cfg_i=cfg_i, cfg_f=cfg_f,
        scale_s=table.scale_s, levels=table.levels, quantiles_s=table.quantiles_s,
        ticks=ticks, busy_area=np.zeros(ticks.size + 1), in_service_area=np.zeros(ticks.size + 1),
    )  # fmt: skip
    return state, table.draw


_PER_SLOT = ("phase", "member_index", "leaving", "wake", "notify", "owned", "owned_n", "cursor", "next_s", "sent_s",
             "deadline_s", "b_part", "b_from", "b_to", "b_n", "b_size", "b_start", "draws", "draw_pos", "draw_end",
             "heads")

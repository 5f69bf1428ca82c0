"""The consumer group: consumers polling their partitions, scoring each poll as one batch, and the
rebalances that every membership change causes. docs/model.md ("Streaming") states the rules.

One SimPy process per consumer and one feeding the topic; nothing is created per event. A consumer:
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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np
import simpy

from capsim.metrics.request_log import COMPLETED, RequestLog
from capsim.servicetime.base import BatchSampler
from capsim.serving.pool import ColdStarter, PoolLevels
from capsim.serving.streaming.assignor import range_assignment, round_robin_assignment, sticky_assignment
from capsim.serving.streaming.spec import StreamingServing
from capsim.serving.streaming.topic import Partition


class Consumer:
    """One member of the group (one pod running the model)."""

    __slots__ = ("batch", "batch_ids", "batch_start_s", "cursor", "index", "leaving", "owned", "sampler", "wake")

    def __init__(self, index: int, sampler: BatchSampler) -> None:
        self.index = index
        self.sampler = sampler
        self.owned: list[int] = []  # partitions it may fetch from now
        self.cursor = 0  # rotation of the partition order between polls
        self.batch: list[int] | None = None  # partitions of the batch being scored
        self.batch_ids = np.empty(0, dtype=np.int64)  # its events' ids
        self.batch_start_s = 0.0
        self.leaving = False
        self.wake: simpy.Event | None = None  # pending while it waits for records or for partitions


class ConsumerGroup:
    """The topic, the group's members and offsets, and the rebalance protocol."""

    def __init__(
        self,
        env: simpy.Environment,
        serving: StreamingServing,
        make_sampler: Callable[[int], BatchSampler],
        partition_rng: np.random.Generator,
        starter_rng: np.random.Generator,
        log: RequestLog,
    ) -> None:
        self.env = env
        self.serving = serving
        self.make_sampler = make_sampler
        self.partition_rng = partition_rng
        self.log = log
        self.partitions = [Partition() for _ in range(serving.partitions)]
        self.owner: list[Consumer | None] = [None] * serving.partitions
        self._transfer_token = [0] * serving.partitions
        self.members: list[Consumer] = []
        self.levels = PoolLevels(serving.consumers, serving.cold_start.warm_pool)
        self.starter = ColdStarter(env, serving.cold_start, starter_rng, self.levels)
        self.desired = serving.consumers
        self.next_index = 0
        self.arrived = 0
        self.records_scored = 0
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
        self.fetch_wait_s = serving.fetch_max_wait_ms / 1000.0
        for _ in range(serving.consumers):
            self._join(self._new_consumer(), initial=True)
        self._assign_all()

    # -- membership ---------------------------------------------------------------------------

    def _new_consumer(self) -> Consumer:
        consumer = Consumer(self.next_index, self.make_sampler(self.next_index))
        self.next_index += 1
        return consumer

    def _join(self, consumer: Consumer, initial: bool = False) -> None:
        self.members.append(consumer)
        if not initial:
            self.levels.ready.set(self.env.now, len(self.members))
        self.env.process(self._consume(consumer))

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
            part = self.partitions[p]
            part.position = part.committed
        self.owner[p] = owner

    def unowned_partition_s(self, now: float) -> float:
        """Partition-seconds without an owner so far (rebalance pauses, or no consumer at all)."""
        open_s = sum(now - t for t in self._unowned_since if t is not None)
        return self.paused_partition_s + open_s

    @staticmethod
    def _wake(member: Consumer) -> None:
        if member.wake is not None and not member.wake.triggered:
            member.wake.succeed()

    # -- the topic -----------------------------------------------------------------------------------

    def feed(self, chunks: Iterator[np.ndarray]) -> Generator[simpy.Event, Any, None]:
        """Append each chunk of arrivals when the clock reaches its first event, keyed to partitions."""
        count = self.serving.partitions
        for times in chunks:
            if times[0] > self.env.now:
                yield self.env.timeout(float(times[0]) - self.env.now)
            first_id = self.log.append_arrivals(times)
            ids = np.arange(first_id, first_id + times.size, dtype=np.int64)
            if self.serving.partitioner == "round_robin":
                keys = ids % count
            else:
                keys = self.partition_rng.integers(0, count, size=times.size)
            order = np.argsort(keys, kind="stable")
            bounds = np.searchsorted(keys[order], np.arange(count + 1))
            for p in range(count):
                rows = order[bounds[p] : bounds[p + 1]]
                if rows.size:
                    self.partitions[p].append(times[rows], ids[rows])
            self.arrived += times.size
            for member in self.members:
                self._wake(member)  # a fetch waiting beyond the appended data looks again
        self._feeding = False
        self._check_drained()

    def lag(self, now_s: float) -> int:
        """Total consumer lag: arrived and not committed, over all partitions."""
        return sum(p.lag(now_s) for p in self.partitions)

    def _check_drained(self) -> None:
        if not self._feeding and self.records_scored == self.arrived and not self.drained.triggered:
            self.drained.succeed()

    # -- a consumer's poll loop --------------------------------------------------------------------

    def _available(self, member: Consumer, now: float) -> int:
        parts = self.partitions
        return sum(parts[p].visible_end(now) - parts[p].position for p in member.owned)

    def _time_of_record(self, member: Consumer, k: int) -> float:
        """When the k-th record after the fetch positions (over the member's partitions) arrives;
        inf if it is not appended yet."""
        if k == 1:  # the common case (fetch.min.bytes = 1): the earliest next record, without numpy
            return min((part.next_s() for part in map(self.partitions.__getitem__, member.owned)),
                       default=float("inf"))  # fmt: skip
        upcoming = [self.partitions[p].upcoming_s(k) for p in member.owned]
        merged = np.concatenate(upcoming) if upcoming else np.empty(0)
        if merged.size < k:
            return float("inf")
        return float(np.partition(merged, k - 1)[k - 1])

    def _fetch(self, member: Consumer) -> Generator[simpy.Event, Any, bool]:
        """Wait until the fetch in progress would return records; False if the member lost its
        partitions or must leave."""
        env = self.env
        min_records = self.serving.fetch_min_records
        wait_s = self.fetch_wait_s
        sent = env.now
        deadline = sent + wait_s
        while True:
            if not member.owned or member.leaving:
                return False
            now = env.now
            available = self._available(member, now)
            if available >= min_records or (available > 0 and now >= deadline):
                return True
            if available == 0:
                first = self._time_of_record(member, 1)
                if first == float("inf"):
                    member.wake = env.event()  # nothing appended yet: the feeder wakes it
                    yield member.wake
                    member.wake = None
                    continue
                if first >= deadline:
                    # Fetches that timed out empty were re-sent back to back: the one in progress
                    # when the first record arrives started at sent + k * wait.
                    if wait_s > 0:
                        k = math.floor((first - sent) / wait_s)
                        deadline = max(sent + (k + 1) * wait_s, first)
                    else:
                        deadline = first
            wake_at = min(self._time_of_record(member, min_records), deadline)
            member.wake = env.event()
            yield env.any_of([member.wake, env.timeout(max(wake_at - now, 0.0))])
            member.wake = None

    def _take(self, member: Consumer) -> tuple[np.ndarray, list[tuple[int, int]]]:
        now = self.env.now
        budget = self.serving.max_poll_records
        owned = member.owned
        n = len(owned)
        start = member.cursor % n
        member.cursor += 1
        taken: list[np.ndarray] = []
        ends: list[tuple[int, int]] = []
        for i in range(n):
            if budget == 0:
                break
            p = owned[(start + i) % n]
            part = self.partitions[p]
            end = min(part.visible_end(now), part.position + budget)
            if end > part.position:
                budget -= end - part.position
                taken.append(part.take(end))
                ends.append((p, end))
        return np.concatenate(taken), ends

    def _consume(self, member: Consumer) -> Generator[simpy.Event, Any, None]:
        env = self.env
        levels = self.levels
        while True:
            if member.leaving and member.batch is None and member not in self.members:
                return
            ready = yield from self._fetch(member)
            if not ready:
                if member.leaving:
                    if member in self.members and self.serving.rebalance.protocol == "cooperative":
                        self._leave_cooperatively(member)
                    if member not in self.members:
                        return
                member.wake = env.event()
                yield member.wake
                member.wake = None
                continue
            ids, ends = self._take(member)
            start_s = env.now
            size = ids.size
            member.batch = [p for p, _ in ends]
            member.batch_ids = ids
            member.batch_start_s = start_s
            levels.busy.add(start_s, 1)
            levels.in_service.add(start_s, size)
            yield env.timeout(member.sampler(size))
            end_s = env.now
            log = self.log
            rows = ids - log.base
            log.start_s[rows] = start_s
            log.end_s[rows] = end_s
            log.batch_size[rows] = size
            log.replica[rows] = member.index
            log.outcome[rows] = COMPLETED
            for p, offset in ends:
                self.partitions[p].committed = offset
            self.records_scored += size
            levels.busy.add(end_s, -1)
            levels.in_service.add(end_s, -size)
            member.batch = None
            self._after_batch(member)
            self._check_drained()

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

    def in_service_batches(self) -> list[Consumer]:
        """Members scoring a batch right now."""
        return [m for m in self.members if m.batch is not None]

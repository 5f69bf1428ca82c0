"""A replica whose process stalls now and then (`serving.stalls`, capsim/serving/stalls.py).

A subclass, chosen by the fleet only when the scenario has stalls, so that the plain replica's hot
path carries no stall check at all. It changes two things and nothing else: a batch's end is
computed from its start and service time through the stall schedule (`StallSchedule.end_s`), and
the front end's per-request work is stretched the same way. Batching rules, dispatch, timeouts and
draining are the plain replica's.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from capsim.metrics.live import LiveMetrics
from capsim.metrics.request_log import RequestLog
from capsim.servicetime.base import BatchSampler
from capsim.serving.replica import Replica, ReplicaConfig
from capsim.serving.stalls import StallSchedule


class StallingReplica(Replica):
    """A `Replica` whose executor and front end slow down during its stalls."""

    def __init__(
        self,
        env: simpy.Environment,
        index: int,
        config: ReplicaConfig,
        sample_s: BatchSampler,
        log: RequestLog,
        on_finished: Callable[[int], None],
        loads: list[int],
        stalls: StallSchedule,
        on_drained: Callable[[Replica], None] | None = None,
        live: LiveMetrics | None = None,
        frontend_sample_s: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(env, index, config, sample_s, log, on_finished, loads, on_drained, live, frontend_sample_s)
        self.stalls = stalls
        self._batch_start_s = 0.0
        unstretched = self._sample_s

        # The plain replica asks its sampler for a duration and schedules the batch's end at
        # start + duration; the duration handed back here is the stretched one, for the start
        # `_start_batch` recorded just before.
        def stretched_s(size: int) -> float:
            start_s = self._batch_start_s
            return stalls.end_s(start_s, unstretched(size)) - start_s

        self._sample_s = stretched_s
        if self._frontend is not None:
            self._frontend.stretch_with(stalls)

    def _start_batch(self, size: int, now: float) -> None:
        self._batch_start_s = now
        super()._start_batch(size, now)

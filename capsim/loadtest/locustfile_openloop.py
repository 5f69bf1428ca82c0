"""Open-loop locustfile: each worker sends its share of a pre-drawn arrival schedule.

One Locust user per worker process walks the schedule; every request is sent by its own greenlet,
so a slow response never delays the next send (the defining property of an open loop, and the one
Locust's closed users lack). A `gevent.pool.Pool` bounds the requests in flight: when the cap is
reached the next send waits for a slot, the wait shows up as send lag, and the hit is counted.

Timing: the user sleeps on a timer until shortly before each send time and then yields in a loop
until the clock reaches it; how long before is measured at start (`calibrate_spin`), since it
depends on the event loop's timer precision (libev with epoll: about a millisecond; with select,
which capsim selects when the connections fit: about 0.1 ms).
"""

from __future__ import annotations

import gc
import time

import gevent
from locust import User, constant, task
from locust.exception import StopUser

from capsim.loadtest import locust_plugin as plugin
from capsim.loadtest.locust_senders import make_sender

SPIN_DEFAULT_S = 0.0015  # libev's epoll backend: timers fire up to ~1 ms late (millisecond timeouts)
SPIN_MIN_S = 0.0002
SPIN_MAX_S = 0.0015
_spin_s = SPIN_DEFAULT_S


def calibrate_spin(samples: int = 40) -> float:
    """Measure how late this event loop's timers fire and spin for that long before each send.

    With select (see process.py) timers are precise to ~0.1 ms and the spin is short, so the
    worker sleeps in the kernel most of the time (the OS wakes sleepers promptly, while a spinning
    process is preempted); with epoll's millisecond timeouts the spin has to cover a millisecond.
    """
    global _spin_s
    late_s = []
    for i in range(samples):
        want_s = 0.0003 + (i % 5) * 0.0004
        begin = time.perf_counter()
        gevent.sleep(want_s)
        late_s.append(time.perf_counter() - begin - want_s)
    late_s.sort()
    # The 75th percentile: the timer's own granularity, not the rare preemption by other processes
    # (which no spin can cover, and which would make the worker spin all the time on a busy machine).
    _spin_s = min(max(late_s[int(0.75 * (samples - 1))] + 0.0001, SPIN_MIN_S), SPIN_MAX_S)
    return _spin_s


def wait_until(target_s: float) -> None:
    """Block this greenlet until `time.time() >= target_s`, letting other greenlets run meanwhile."""
    delay_s = target_s - time.time()
    if delay_s > _spin_s:
        gevent.sleep(delay_s - _spin_s)
    while time.time() < target_s:
        gevent.sleep(0)


class OpenLoopUser(User):
    """Sends the worker's schedule; one instance per worker process (see locust_senders.py for how
    requests go out: not through Locust's `request` event, so Locust's own stats table stays empty
    in open-loop runs; capsim's summary is the record)."""

    wait_time = constant(0)

    def on_start(self) -> None:
        config = plugin.wait_config()
        self._sender = make_sender(self.host or "", config["request"], int(config["max_in_flight"]),
                                   float(config["request_timeout_s"]), plugin.WORKER.recorder, config)
        self._sender.prewarm()
        plugin.WORKER.sender = self._sender  # the final flush records what is still in flight
        plugin.WORKER.counters["sender"] = type(self._sender).__name__
        plugin.WORKER.counters["spin_ms"] = round(calibrate_spin() * 1000.0, 3)
        plugin.WORKER.counters["event_loop"] = str(getattr(gevent.get_hub().loop, "backend", "unknown"))
        # Everything allocated so far (Locust, Flask, gevent...) lives for the whole run: keep it out of
        # the collector's way, so that a full collection cannot stall the schedule for milliseconds.
        gc.freeze()

    @task
    def run_schedule(self) -> None:
        """Walk the schedule, wait for the answers, then report done."""
        config = plugin.wait_config()
        start_s = float(config["start_s"])
        sender = self._sender
        wait_until(start_s)
        plugin.reset_cpu_meter()
        for offset_s in config["schedule"]:
            if plugin.WORKER.stopping:
                break
            intended_s = start_s + offset_s
            wait_until(intended_s)
            if plugin.WORKER.stopping:  # stopped while waiting: a send now would come after the last rows
                break
            cap_hit = sender.full()
            sender.send(intended_s)  # waits for a free slot when the cap is reached
            plugin.note_dispatch(cap_hit, sender.in_flight())
        sender.drain(float(config["request_timeout_s"]) + 1.0)
        plugin.finish(self.environment)
        raise StopUser()  # the coordinator ends the run once every worker is done

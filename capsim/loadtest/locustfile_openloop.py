"""Open-loop locustfile: each worker sends its share of a pre-drawn arrival schedule.

One Locust user per worker process walks the schedule; every request is sent by its own greenlet,
so a slow response never delays the next send (the defining property of an open loop, and the one
Locust's closed users lack). A `gevent.pool.Pool` bounds the requests in flight: when the cap is
reached the next send waits for a slot, the wait shows up as send lag, and the hit is counted.

Timing: the user sleeps on a timer until shortly before each send time and then yields in a loop
until the clock reaches it; how long before is measured at start (`calibrate_spin`), since it
depends on the event loop's timer precision (libev with epoll: about a millisecond; with io_uring,
which capsim selects where the kernel has it: about 0.1 ms).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.pool import Pool
from geventhttpclient import HTTPClient
from geventhttpclient.url import URL
from locust import User, constant, task
from locust.exception import StopUser

from capsim.loadtest import locust_plugin as plugin

SPIN_DEFAULT_S = 0.0015  # libev's epoll backend: timers fire up to ~1 ms late (millisecond timeouts)
SPIN_MIN_S = 0.0002
SPIN_MAX_S = 0.002
_spin_s = SPIN_DEFAULT_S


def calibrate_spin(samples: int = 40) -> float:
    """Measure how late this event loop's timers fire and spin for that long before each send.

    With io_uring (see process.py) timers are precise to ~0.1 ms and the spin is short, so the
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
    _spin_s = min(max(late_s[int(0.9 * (samples - 1))] + 0.0001, SPIN_MIN_S), SPIN_MAX_S)
    return _spin_s


def wait_until(target_s: float) -> None:
    """Block this greenlet until `time.time() >= target_s`, letting other greenlets run meanwhile."""
    delay_s = target_s - time.time()
    if delay_s > _spin_s:
        gevent.sleep(delay_s - _spin_s)
    while time.time() < target_s:
        gevent.sleep(0)


class OpenLoopUser(User):
    """Sends the worker's schedule; one instance per worker process.

    Requests go through geventhttpclient directly and are recorded by capsim, not through Locust's
    `request` event: Locust's per-request statistics cost about 70 µs of CPU per request, which at a
    few thousand requests per second is the difference between sending on time and sending late.
    (Locust's own stats table therefore stays empty in open-loop runs; capsim's summary is the record.)
    """

    wait_time = constant(0)

    def on_start(self) -> None:
        config = plugin.wait_config()
        self._request: dict[str, Any] = config["request"]
        timeout_s = float(config["request_timeout_s"])
        # The pool is as large as the in-flight cap, so that the cap, not the pool, is what binds.
        self._client = HTTPClient.from_url(
            URL(self.host or ""), concurrency=int(config["max_in_flight"]), connection_timeout=timeout_s,
            network_timeout=timeout_s, insecure=True,  # like Locust: load tests do not verify certificates
        )
        self._body = (self._request.get("body") or "").encode("utf-8")
        plugin.WORKER.counters["spin_ms"] = round(calibrate_spin() * 1000.0, 3)
        plugin.WORKER.counters["event_loop"] = str(getattr(gevent.get_hub().loop, "backend", "unknown"))
        self._headers = dict(self._request.get("headers") or {})

    def _send(self, intended_s: float) -> None:
        spec = self._request
        recorder = plugin.WORKER.recorder
        sent_s = time.time()
        started = time.perf_counter()
        try:
            response = self._client.request(spec["method"], spec["path"], body=self._body, headers=self._headers)
            try:
                n_bytes = len(response.read())
            finally:
                response.release()
            status = int(response.status_code)
            error = None if status < 400 else f"HTTP {status}"
        except Exception as exc:  # connection refused, reset, timeout: a failed request, not a crash
            status, n_bytes, error = 0, 0, f"{type(exc).__name__}: {exc}"[:300]
        latency_ms = (time.perf_counter() - started) * 1000.0
        recorder.record(intended_s, sent_s, latency_ms, status, n_bytes, error, spec["name"])

    @task
    def run_schedule(self) -> None:
        """Walk the schedule, one greenlet per request, wait for the answers, then report done."""
        config = plugin.wait_config()
        start_s = float(config["start_s"])
        pool = Pool(int(config["max_in_flight"]))
        for offset_s in config["schedule"]:
            if plugin.WORKER.stopping:
                break
            intended_s = start_s + offset_s
            wait_until(intended_s)
            cap_hit = pool.full()
            pool.spawn(self._send, intended_s)  # waits for a free slot when the cap is reached
            plugin.note_dispatch(cap_hit, len(pool))
        pool.join(timeout=float(config["request_timeout_s"]) + 1.0)
        plugin.finish(self.environment)
        raise StopUser()  # the coordinator ends the run once every worker is done

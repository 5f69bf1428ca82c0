"""Open-loop locustfile: each worker sends its share of a pre-drawn arrival schedule.

One Locust user per worker process walks the schedule; every request is sent by its own greenlet,
so a slow response never delays the next send (the defining property of an open loop, and the one
Locust's closed users lack). A `gevent.pool.Pool` bounds the requests in flight: when the cap is
reached the next send waits for a slot, the wait shows up as send lag, and the hit is counted.

Timing: libev timers fire with about a millisecond of slack, so the user sleeps until shortly before
each send time and then yields in a loop until the clock reaches it. This spends some CPU to keep
the p99 send lag well under a millisecond.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.pool import Pool
from locust import FastHttpUser, constant, task
from locust.contrib.fasthttp import FastHttpSession

from capsim.loadtest import locust_plugin as plugin

SPIN_S = 0.0015  # sleep on a timer until this close to the send time, then yield-spin


def wait_until(target_s: float) -> None:
    """Block this greenlet until `time.time() >= target_s`, letting other greenlets run meanwhile."""
    delay_s = target_s - time.time()
    if delay_s > SPIN_S:
        gevent.sleep(delay_s - SPIN_S)
    while time.time() < target_s:
        gevent.sleep(0)


class OpenLoopUser(FastHttpUser):
    """Sends the worker's schedule; one instance per worker process."""

    wait_time = constant(0)

    def on_start(self) -> None:
        config = plugin.wait_config()
        self._request: dict[str, Any] = config["request"]
        # The user's client is built before the configuration arrives; replace it with one whose
        # connection pool is as large as the in-flight cap, so that the cap, not the pool, binds.
        timeout_s = float(config["request_timeout_s"])
        self.client = FastHttpSession(
            base_url=self.host,
            request_event=self.environment.events.request,
            network_timeout=timeout_s,
            connection_timeout=timeout_s,
            max_retries=0,
            insecure=True,
            concurrency=int(config["max_in_flight"]),
            user=self,
        )

    def _send(self, intended_s: float) -> None:
        spec = self._request
        self.client.request(
            spec["method"],
            spec["path"],
            data=spec.get("body"),
            headers=spec.get("headers"),
            name=spec.get("name"),
            context={"capsim_intended_s": intended_s},
        )

    @task
    def run_schedule(self) -> None:
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
        while True:  # the coordinator ends the run once every worker is done
            gevent.sleep(1.0)

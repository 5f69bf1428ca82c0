"""Closed-loop locustfile: N users, each sending one request and then thinking, like classic Locust.

Kept for comparison with existing Locust tests. A closed loop lowers the offered load when the
server slows down (coordinated omission), so here the intended send time equals the actual one and
the corrected latency equals the uncorrected one: there is no schedule to be late against.
"""

from __future__ import annotations

from typing import Any

from locust import FastHttpUser, task

from capsim.loadtest import locust_plugin as plugin


class ClosedLoopUser(FastHttpUser):
    """One request per iteration, then `think_time_s` of think time."""

    network_timeout = 30.0
    connection_timeout = 10.0

    def wait_time(self) -> float:
        """Think time between a response and the next request."""
        return float(plugin.wait_config()["think_time_s"])

    @task
    def send(self) -> None:
        spec: dict[str, Any] = plugin.wait_config()["request"]
        self.client.request(spec["method"], spec["path"], data=spec.get("body"), headers=spec.get("headers"),
                            name=spec.get("name"))

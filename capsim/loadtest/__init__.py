"""Load testing with Locust: open-loop arrivals, coordinated-omission-corrected latencies, exact
merged percentiles, telemetry and distributed runs.

Nothing imported from this package's `__init__` imports locust or gevent: Locust runs as its own
process (see `process.py`), and only the locustfiles and `locust_plugin.py` import it.
"""

from __future__ import annotations

from capsim.loadtest.settings import LoadTestSettings, build_arrival

__all__ = ["LoadTestSettings", "build_arrival"]

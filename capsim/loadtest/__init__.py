"""Load testing with Locust: open-loop arrivals, coordinated-omission-corrected latencies, exact
merged percentiles, telemetry and distributed runs.

Nothing imported from this package's `__init__` imports locust or gevent: Locust runs as its own
process (see `process.py`), and only the locustfiles and `locust_plugin.py` import it.

Importing the package imports nothing else: the CLI reads `capsim.loadtest.choices` at start-up and
loads the rest (settings, runner, analysis) when a load test runs.
"""

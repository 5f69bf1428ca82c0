"""Prometheus metrics of the reference server, and the batcher observer that feeds them and the
per-batch log.

Names follow Prometheus conventions (base units, `_total` counters) under the `refserver_` prefix.
Latency histograms have buckets from 0.1 ms to 30 s so that both a CPU MLP and a queue backed up
to its timeout land in a bucket of their own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

from reference_server.batcher import Batch, BatcherObserver, DynamicBatcher, PendingRequest
from reference_server.batchlog import BatchLog, encode_batch

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
    0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
BATCH_SIZE_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512, 1024)


class ServerMetrics:
    """The metric objects, on a registry of their own (no global state between test servers)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # Process CPU seconds, RSS, open fds (from /proc; nothing on other platforms).
        ProcessCollector(registry=r)
        self.requests = Counter(
            "refserver_requests",
            "inference requests answered, by HTTP status code",
            ["model", "endpoint", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "refserver_request_latency_seconds",
            "server-side latency of successful inference requests: request received -> response ready",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_wait = Histogram(
            "refserver_queue_wait_seconds",
            "time a request waited in the batcher queue (arrival -> its batch starts)",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "refserver_batch_size",
            "requests per batch",
            ["model"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=r,
        )
        self.batch_compute = Histogram(
            "refserver_batch_compute_seconds",
            "executor busy time per batch: batch taken -> outputs ready",
            ["model"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.timed_out = Counter(
            "refserver_queue_timeouts", "requests that left the queue at their deadline", ["model"], registry=r
        )
        self.queue_depth = Gauge(
            "refserver_queue_depth", "requests waiting in the batcher queue", ["model"], registry=r
        )
        self.busy = Gauge("refserver_executors_busy", "executors running a batch", ["model"], registry=r)
        self.executors = Gauge("refserver_executors", "model executors (instances)", ["model"], registry=r)
        self.ready = Gauge("refserver_ready", "1 once warm-up is done", ["model"], registry=r)
        # Children resolved once: labels() costs a dict lookup and a lock on every call.
        self._latency = self.latency.labels(model)
        self._queue_wait = self.queue_wait.labels(model)
        self._batch_size = self.batch_size.labels(model)
        self._batch_compute = self.batch_compute.labels(model)
        self._timed_out = self.timed_out.labels(model)

    def bind(self, batcher: DynamicBatcher, n_executors: int) -> None:
        """Gauges read from the batcher at scrape time."""
        self.queue_depth.labels(self.model).set_function(lambda: batcher.queue_depth)
        self.busy.labels(self.model).set_function(lambda: batcher.busy_executors)
        self.executors.labels(self.model).set(n_executors)

    def count(self, endpoint: str, code: int, model: str | None = None) -> None:
        """Count one answered request."""
        self.requests.labels(model or self.model, endpoint, str(code)).inc()

    def observe_latency(self, seconds: float) -> None:
        """Server-side latency of one successful request."""
        self._latency.observe(seconds)


class MetricsObserver(BatcherObserver):
    """Feeds batch events into the metrics and the batch log."""

    def __init__(self, metrics: ServerMetrics, batch_log: BatchLog) -> None:
        self.metrics = metrics
        self.batch_log = batch_log

    def batch_started(self, batch: Batch) -> None:
        m = self.metrics
        m._batch_size.observe(batch.size)
        for request in batch.requests:
            m._queue_wait.observe(batch.start_mono - request.arrival_mono)

    def batch_finished(self, batch: Batch, error: BaseException | None) -> None:
        self.metrics._batch_compute.observe(batch.compute_s)
        text = None if error is None else f"{type(error).__name__}: {error}"
        self.batch_log.append(batch.batch_id, encode_batch(batch, self.metrics.model, text))

    def request_timed_out(self, request: PendingRequest, now_mono: float) -> None:
        self.metrics._timed_out.inc()

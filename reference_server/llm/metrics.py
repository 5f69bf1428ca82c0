"""Prometheus metrics of the reference LLM server, named as vLLM V1 names them
(`vllm/v1/metrics/loggers.py`, v0.11.0), so dashboards and autoscaler rules written for vLLM work:

- gauges: `vllm:num_requests_running` (sequences in the running list), `vllm:num_requests_waiting`
  (new or preempted), `vllm:kv_cache_usage_perc` (fraction 0–1 of KV blocks held; named
  `vllm:gpu_cache_usage_perc` before 0.9.2, hidden in 0.11);
- counters: `vllm:prompt_tokens_total` (prompt tokens of requests that got their first token),
  `vllm:generation_tokens_total`, `vllm:request_success_total{finished_reason}` (`length`, `stop`;
  `abort` for a client gone), `vllm:num_preemptions_total`, `vllm:prefix_cache_queries_total` and
  `vllm:prefix_cache_hits_total` (tokens looked up / found);
- histograms: `vllm:time_to_first_token_seconds` (request received → first token sampled),
  `vllm:inter_token_latency_seconds` (gaps between a request's tokens; it replaced
  `vllm:time_per_output_token_seconds`, deprecated in 0.11), `vllm:request_time_per_output_token_seconds`
  (per request (E2E − TTFT)/(output − 1)), `vllm:e2e_request_latency_seconds` (received → last
  token), `vllm:request_queue_time_seconds` (received → first scheduled),
  `vllm:request_prefill_time_seconds` (first scheduled → first token), `vllm:iteration_tokens_total`
  (tokens per engine step).

Labels `model_name` and `engine` (always "0": one engine) as vLLM's; histogram buckets are vLLM's.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.process_collector import ProcessCollector

TTFT_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                  20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BUCKETS_S = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                 40.0, 80.0)  # fmt: skip
REQUEST_BUCKETS_S = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0,
                     240.0, 480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
ITERATION_TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)


class LlmMetrics:
    """The metric objects on a registry of their own, label values bound once."""

    def __init__(self, model_name: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        names = ["model_name", "engine"]
        labels = (model_name, "0")

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, names, registry=r)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, names, registry=r).labels(*labels)

        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, names, buckets=buckets, registry=r).labels(*labels)

        self._labels = labels
        self.running = gauge("vllm:num_requests_running", "Number of requests in model execution batches.")
        self.waiting = gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.")
        self.kv_usage = gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.")
        self.prompt_tokens = counter("vllm:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter("vllm:generation_tokens", "Number of generation tokens processed.")
        self.preemptions = counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.")
        self.prefix_queries = counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of tokens.")
        self.prefix_hits = counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of tokens.")
        self.success = Counter("vllm:request_success", "Count of successfully processed requests.",
                               [*names, "finished_reason"], registry=r)  # fmt: skip
        self.ttft = histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
                              TTFT_BUCKETS_S)  # fmt: skip
        self.itl = histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
                             ITL_BUCKETS_S)  # fmt: skip
        self.tpot = histogram("vllm:request_time_per_output_token_seconds",
                              "Histogram of time_per_output_token_seconds per request.", ITL_BUCKETS_S)  # fmt: skip
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
                             REQUEST_BUCKETS_S)  # fmt: skip
        self.queue_time = histogram("vllm:request_queue_time_seconds",
                                    "Histogram of time spent in WAITING phase for request.",
                                    REQUEST_BUCKETS_S)  # fmt: skip
        self.prefill_time = histogram("vllm:request_prefill_time_seconds",
                                      "Histogram of time spent in PREFILL phase for request.",
                                      REQUEST_BUCKETS_S)  # fmt: skip
        self.iteration_tokens = histogram("vllm:iteration_tokens_total",
                                          "Histogram of number of tokens per engine_step.",
                                          ITERATION_TOKEN_BUCKETS)  # fmt: skip

    def bind(self, running: Callable[[], float], waiting: Callable[[], float], kv_usage: Callable[[], float]) -> None:
        """Gauges read from the engine at scrape time."""
        self.running.labels(*self._labels).set_function(running)
        self.waiting.labels(*self._labels).set_function(waiting)
        self.kv_usage.labels(*self._labels).set_function(kv_usage)

    def finished(self, reason: str) -> None:
        """Count one finished request."""
        self.success.labels(*self._labels, reason).inc()

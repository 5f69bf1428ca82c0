"""Per-request statistics of an LLM run, as the standard benchmarks define them (vLLM `bench
serve`'s `calculate_metrics`; docs/model.md "LLM serving"), folded from the engine's output rows
block by block, so a run keeps either every value (exact percentiles) or only mergeable histograms
(bounded memory, <= 0.5% relative error) — the same two modes as capsim.metrics.tally.

- TTFT = first token − arrival; E2E (`latency_ms`) = last token − arrival;
- TPOT = (E2E − TTFT) / (output tokens − 1), per request with more than one output token;
- queue wait = first scheduled step's start − arrival (vLLM's `request_queue_time_seconds`);
- ITL = every gap between two consecutive tokens of a request: folded inside the loop
  (capsim/serving/llm/kernel.py `fold_itl`), read here with `itl_summary`;
- goodput = requests meeting every SLO given (TTFT, TPOT, E2E), per second; a request with one
  output token has no TPOT and meets a TPOT objective (vLLM counts its TPOT as 0).
Only requests that arrived after warm-up count; refused requests count as arrived and rejected
(and as missing the SLO).
"""

from __future__ import annotations

import math

import numpy as np

from capsim.metrics.histogram import LogHistogram
from capsim.metrics.tally import PERCENTILES, ExactValues, HistogramValues, ValueDistribution, empty_summary
from capsim.serving.llm.plane import COMPLETED, H_COUNT, H_MAX, H_MIN, H_SUM, H_ZERO, REJECTED

DISTRIBUTIONS = ("ttft_ms", "tpot_ms", "latency_ms", "queue_wait_ms")


class LlmTally:
    """Counts, token totals and the TTFT / TPOT / E2E / queue-wait distributions of one replication."""

    def __init__(self, warmup_s: float, slo_s: dict[str, float], exact: bool) -> None:
        """`slo_s` maps "ttft", "tpot", "latency" to bounds in seconds (those the scenario sets)."""
        self.warmup_s = warmup_s
        self.slo_s = slo_s
        make = ExactValues if exact else HistogramValues
        self.values: dict[str, ValueDistribution] = {name: make() for name in DISTRIBUTIONS}
        self.arrived = self.completed = self.rejected = 0
        self.input_tokens = self.output_tokens = 0
        self.within_slo = 0
        self.preempted_requests = 0

    def add(self, rows: dict[str, np.ndarray]) -> None:
        """Fold a block of output rows (capsim.serving.llm.plane.OUT_COLUMNS)."""
        keep = rows["arrival_s"] >= self.warmup_s
        rows = {name: col[keep] for name, col in rows.items()}
        outcome = rows["outcome"]
        self.arrived += outcome.size
        self.rejected += int((outcome == REJECTED).sum())
        done = outcome == COMPLETED
        self.completed += int(done.sum())
        arrival = rows["arrival_s"][done]
        output = rows["output"][done]
        self.input_tokens += int(rows["prompt"][done].sum())
        self.output_tokens += int(output.sum())
        self.preempted_requests += int((rows["preempted"][done] > 0).sum())
        ttft_s = rows["first_token_s"][done] - arrival
        e2e_s = rows["end_s"][done] - arrival
        many = output > 1
        tpot_s = (e2e_s[many] - ttft_s[many]) / (output[many] - 1)
        self.values["ttft_ms"].add(ttft_s * 1000.0)
        self.values["latency_ms"].add(e2e_s * 1000.0)
        self.values["tpot_ms"].add(tpot_s * 1000.0)
        self.values["queue_wait_ms"].add((rows["first_sched_s"][done] - arrival) * 1000.0)
        good = np.ones(arrival.size, dtype=bool)
        if "ttft" in self.slo_s:
            good &= ttft_s <= self.slo_s["ttft"]
        if "latency" in self.slo_s:
            good &= e2e_s <= self.slo_s["latency"]
        if "tpot" in self.slo_s:
            tpot_all = np.zeros(arrival.size)
            tpot_all[many] = tpot_s
            good &= tpot_all <= self.slo_s["tpot"]
        self.within_slo += int(good.sum())

    def summaries(self) -> dict[str, dict[str, float]]:
        """Mean, percentiles and max of each distribution, in ms."""
        return {name: dist.summary() for name, dist in self.values.items()}


def itl_summary(counts: np.ndarray, stats: np.ndarray) -> dict[str, float]:
    """The ITL distribution (ms) from the loop's histogram of gaps in seconds: exact mean, max and
    count; percentiles within the histogram's relative error."""
    total = int(stats[H_COUNT])
    if total == 0:
        return empty_summary()
    hist = itl_histogram()
    hist.counts = counts.copy()
    hist.total = total
    hist.sum = float(stats[H_SUM])
    hist.max = float(stats[H_MAX])
    hist.min = float(stats[H_MIN])
    hist.zero_count = int(stats[H_ZERO])
    result = {"mean": hist.mean() * 1000.0}
    result.update({k: hist.quantile(p / 100.0) * 1000.0 for k, p in PERCENTILES.items()})
    result["max"] = hist.max * 1000.0
    return result


def itl_histogram() -> LogHistogram:
    """The (empty) histogram whose parameters the loop folds ITL gaps with, in seconds."""
    return LogHistogram(relative_error=0.005, min_value=1e-7)


def itl_buckets(horizon_s: float) -> int:
    """Buckets enough for any gap up to `horizon_s`."""
    hist = itl_histogram()
    return math.ceil(math.log(horizon_s / hist.min_value) / math.log(hist.gamma)) + 2

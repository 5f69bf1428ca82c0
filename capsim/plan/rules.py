"""The safety rules a plan's pick must satisfy, and the one rule that reads an SLO off a run summary.

A configuration is the plan's answer only when (docs/model.md, "Planning"):

* **headroom**: its peak offered load is at most `max_utilization` (default 0.8) of its capacity with
  full batches (`capsim.stability`), so it absorbs a quarter more than the peak forecast before its
  queues grow without bound; checked before simulating (it needs no run);
* **confidence**: the 95% interval (Student t across replications, never narrower than the
  histograms' 0.5% resolution) of its tail latency at the SLO percentile lies wholly within the
  target (`meets`); wholly above it is `fails`; an interval that still straddles the target after
  `max_replications` is `undecided` and never chosen;
* **stability**: offered load below capacity (an `unstable` variant is never chosen);
* **redundancy**: at least `min_replicas` replicas (default 2: one replica lost, the service still
  answers), and with `n_plus_one` one replica more than the smallest fleet meeting the SLO.

`meets_slo(summary, slo)` is the only place that compares a summary with an SLO: each objective of
`slo` that the summary has a block for (`latency_ms`; an LLM run's `ttft_ms`, `tpot_ms`) is judged
at the SLO's percentile, so a new kind of objective is one entry of `OBJECTIVES`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from capsim.hardware.cost import HOURS_PER_MONTH
from capsim.sweep import tail_key, tail_percentile

OBJECTIVES = ("latency_ms", "ttft_ms", "tpot_ms")
"""SLO keys judged on the summary block of the same name, at the SLO's percentile."""

SloStatus = Literal["meets", "fails", "undecided"]

HISTOGRAM_RESOLUTION = 0.005
"""Relative error of a percentile read from the bounded-memory histograms the plan's runs keep
(capsim/metrics/tally.py, `RequestTally(relative_error=0.005)`): replications that land in the same
bucket agree exactly, so the interval is never taken narrower than this share of the tail."""


@dataclass(frozen=True)
class SafetyRules:
    """The rules in force (defaults are `capsim plan --help`'s and docs/model.md's)."""

    max_utilization: float = 0.8
    initial_replications: int = 3
    max_replications: int = 12
    min_replicas: int = 2
    n_plus_one: bool = False
    hours_per_month: float = HOURS_PER_MONTH

    def as_dict(self) -> dict[str, Any]:
        """plan.json's `rules` block (docs/plan.md)."""
        raw = asdict(self)
        return {
            "max_utilization": raw["max_utilization"],
            "confidence": {
                "level": 0.95,
                "initial_replications": raw["initial_replications"],
                "max_replications": raw["max_replications"],
            },
            "redundancy": {"min_replicas": raw["min_replicas"], "n_plus_one": raw["n_plus_one"]},
            "hours_per_month": raw["hours_per_month"],
        }

    def more_replications(self, have: int) -> int:
        """How many replications a still undecided variant should have next: double, up to the cap."""
        return min(self.max_replications, max(have * 2, self.initial_replications))


@dataclass(frozen=True)
class SloVerdict:
    """What one summary says about an SLO: the status, the tail that decided it and its interval."""

    status: SloStatus
    tail_ms: float | None
    tail_ci95_ms: float | None
    tail_percentile: float
    reason: str


def _judge_tail(name: str, tail: float | None, half: float | None, target: float, percentile: float) -> SloVerdict:
    label = f"{name} p{percentile:g}"
    if tail is None or not math.isfinite(tail):
        return SloVerdict("fails", None, None, percentile, f"{label}: no request finished")
    if half is None:  # one replication, or a key without an interval (max): the point estimate decides
        status: SloStatus = "meets" if tail <= target else "fails"
        return SloVerdict(status, tail, None, percentile, f"{label} {tail:.4g} vs {target:g} (no interval)")
    half = max(half, tail * HISTOGRAM_RESOLUTION)
    if tail + half <= target:
        status, word = "meets", "within"
    elif tail - half > target:
        status, word = "fails", "above"
    else:
        status, word = "undecided", "straddles"
    reason = f"{label} {tail:.4g} ± {half:.2g} {word} {target:g}"
    return SloVerdict(status, tail, half, percentile, reason)


def meets_slo(summary: dict[str, Any], slo: dict[str, Any]) -> SloVerdict:
    """Judge `summary` against `slo` ({objective: target, "percentile": p}) under the confidence rule.

    Every objective in `OBJECTIVES` that `slo` sets is read at the SLO percentile's key of the
    summary's block of that name (`tail_key`: the next percentile above when the summary lacks it)
    with its 95% half-width from `ci95`. The worst status wins (fails, then undecided); the verdict
    reports the objective that decided it. Requests rejected or timed out beyond the percentile's
    allowance (a 99% SLO allows 1%) fail the SLO whatever the latency of the others.
    """
    percentile = float(slo.get("percentile") or 99.0)
    key = tail_key(percentile)
    verdicts = []
    for name in OBJECTIVES:
        target = slo.get(name)
        if target is None:
            continue
        block = summary.get(name) or {}
        half = ((summary.get("ci95") or {}).get(name) or {}).get(key)
        verdicts.append(_judge_tail(name, block.get(key), half, float(target), tail_percentile(key)))
    if not verdicts:
        raise ValueError(f"the SLO {slo} sets none of {', '.join(OBJECTIVES)}")
    requests = summary.get("requests") or {}
    arrived = requests.get("arrived") or 0
    lost = (requests.get("rejected") or 0) + (requests.get("timed_out") or 0)
    if arrived and lost / arrived > 1.0 - percentile / 100.0:
        first = verdicts[0]
        return SloVerdict("fails", first.tail_ms, first.tail_ci95_ms, first.tail_percentile,
                          f"{lost / arrived:.2%} of requests rejected or timed out")  # fmt: skip
    order = {"fails": 0, "undecided": 1, "meets": 2}
    return min(verdicts, key=lambda v: order[v.status])


def llm_headroom(replications: list[dict[str, Any]]) -> str | None:
    """The LLM engines' headroom rule: why a configuration has none (None: it has some).

    Requests-per-second headroom (`max_utilization` of the full-batch capacity) is checked before
    simulating, as for every fleet; an LLM engine also runs out of two things a capacity estimate
    averages away, so every replication must show, on every replica:

    * **no preemption**: vLLM preempts (recomputes) a running request when the KV cache cannot hold
      the next token of every running request; it is the symptom its tuning guide tells you to fix
      with more KV cache or fewer sequences ("Optimization and Tuning", Preemption,
      https://docs.vllm.ai/en/latest/configuration/optimization.html), and each one costs a whole
      prefill again;
    * **running requests below `max_num_seqs`** at every step (`batch_size.max`): at the cap the
      scheduler admits nobody new (vllm/v1/core/sched/scheduler.py stops admission at
      `len(running) == max_num_seqs`), so requests wait for seats and TTFT depends on departures,
      not on the step time — no room for a burst beyond the simulated one.

    Other runs (no `kv_cache` block) have nothing to check here."""
    settings = (replications[0].get("engine_settings") or {}) if replications else {}
    if "max_num_seqs" not in settings:
        return None
    preemptions = sum(int((r.get("kv_cache") or {}).get("preemptions") or 0) for r in replications)
    if preemptions:
        return f"headroom: {preemptions} preemptions (KV cache full) over {len(replications)} replications"
    peak = max(int((r.get("batch_size") or {}).get("max") or 0) for r in replications)
    if peak >= int(settings["max_num_seqs"]):
        return f"headroom: {peak} requests running at once, at max_num_seqs ({settings['max_num_seqs']})"
    return None


def slo_targets(slo: Any) -> dict[str, Any]:
    """A scenario's `slo` section as the dict `meets_slo` reads (its set fields only)."""
    return {k: v for k, v in slo.model_dump().items() if v is not None}

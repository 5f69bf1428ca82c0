"""The bundled scenarios' golden runs: which overrides shorten each one for the test suite, and how
to produce its summary. `python tests/golden/regenerate.py` rewrites the committed summaries —
deliberately, after a change to the model that is meant to move the numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capsim import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[2]
GOLDEN_DIR = Path(__file__).resolve().parent

# Shorter runs than the files' own durations keep the suite fast; every mechanism still runs.
OVERRIDES: dict[str, list[str]] = {
    "quickstart": ["duration_s=120", "warmup_s=20"],
    "fraud-scoring-cpu": ["duration_s=40", "warmup_s=5"],
    "recsys-ranker-gpu": ["duration_s=60", "warmup_s=10"],
    "bursty-image-classifier": ["duration_s=300", "warmup_s=60"],
    "trace-replay-moderation": ["duration_s=600", "warmup_s=60"],
    "mmc-check": ["duration_s=5000", "warmup_s=500"],
    # The day compressed into half an hour: the whole diurnal cycle, autoscaler and cold starts included.
    "diurnal-a10g-hpa": ["duration_s=1800", "warmup_s=60", "workload.arrival.period_s=1800"],
    "diurnal-l4-always-on": ["duration_s=1800", "warmup_s=60", "workload.arrival.period_s=1800"],
    "flash-crowd-kpa": ["duration_s=1200", "warmup_s=60"],
    "flash-crowd-hpa": ["duration_s=1200", "warmup_s=60"],
    "scale-to-zero-internal": ["duration_s=14400"],
    "measured-cnn-cpu": ["duration_s=60", "warmup_s=10"],
    "measured-cnn-h100": ["duration_s=30", "warmup_s=5"],
    # Batch jobs run whole (a million items take a second to simulate). The spot file runs on one
    # worker at a reclaim rate far above the published one, so that reclaims and replacements show.
    "nightly-scoring-t4": [],
    "nightly-scoring-a10g-spot": ["serving.workers=1", "serving.spot.monthly_interruption_probability=null",
                                  "serving.spot.interruptions_per_hour=0.5"],
    # Five minutes from 17:00, on the rise to the evening peak: the group starts at 4 consumers,
    # KEDA grows it to the partition cap, and every new consumer rebalances the group.
    "iot-anomaly-streaming": ["duration_s=300", "warmup_s=30", "workload.arrival.start_time_h=17"],
    "async-image-processing": ["duration_s=3600", "warmup_s=300"],
    "spot-heavy-fleet": ["duration_s=3600", "warmup_s=300", "workload.arrival.rate_rps=100",
                         "serving.spot.interruptions_per_hour=2"],
    # Issue 15's light-load LLM check runs whole: TTFT 56.2 ms, TPOT 5.1 ms, E2E 703.9 ms exactly.
    "llm-check": [],
    # The LLM chatbots replay the whole Azure conversation trace (19,366 requests, ~1 s each); the
    # summarizer runs whole too (30 min at 0.15 documents/s).
    "llm-chatbot-h100": [],
    "llm-chatbot-a100": [],
    "llm-chatbot-l40s": [],
    "llm-summarizer-long-context": [],
    # The LLM day compressed into half an hour (same shape and peak): KEDA on waiting requests, cold starts.
    "llm-day-keda-waiting": ["duration_s=1800", "workload.arrival.period_s=1800"],
    # Graphs of models: shortened; the canary's schedule compressed into six minutes (5% -> 25% at
    # 2 min -> 100% at 4 min): v1 shrinks, v2 starts a replica that is not ready by the end.
    "search-pipeline-chain": ["duration_s=300", "warmup_s=30"],
    "fraud-ensemble-fanout": ["duration_s=60", "warmup_s=10"],
    "canary-rollout": ["duration_s=360", "warmup_s=30", "serving.entry.schedule=[{at_s: 120, split: {v1: 0.75, "
                       "v2: 0.25}}, {at_s: 240, split: {v1: 0.0, v2: 1.0}}]"],
    # The blue-green cutover compressed into seven minutes: v2 warms up at 1 min (its cold start
    # takes at most 260 s), the switch at 5.5 min; both fleets billed in between, v1 released as it drains.
    "blue-green-cutover": ["duration_s=420", "warmup_s=30", "serving.rollout.warm_up_at_s=60",
                           "serving.rollout.switch_at_s=330"],
    # Seven replicas on the MIG slices of one A100-80GB, billed as one GPU.
    "small-models-mig-a100": ["duration_s=120", "warmup_s=20"],
    # Requests of 1-32 tokens in padded batches, on a profile with a size axis.
    "text-embedding-sizes": ["duration_s=60", "warmup_s=10"],
}


def scenario_paths() -> list[Path]:
    """Every bundled scenario."""
    return sorted((ROOT / "scenarios").glob("*.yaml"))


def golden_summary(path: Path) -> dict[str, Any]:
    """The summary of the scenario's golden run (two replications, so the CI keys are covered)."""
    scenario = load_scenario(path, OVERRIDES[path.stem])
    return simulate(scenario, replications=2).summary

"""How fast capsim simulates a batch job: the bundled nightly-scoring job (1,000,000 items, 15,625
batches) run whole, a job with batch size 1 (a million batches), and `--solve hardware` on it.

Run: python benchmarks/batch_job_speed.py [--repeat N] (prints the fastest of N runs and the peak
memory of the process; asserts nothing).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Callable
from pathlib import Path

from capsim import load_scenario, simulate
from capsim.plan.batchjob_search import cheapest_hardware

ROOT = Path(__file__).resolve().parents[1]


def fastest_s(run: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    nightly = load_scenario(ROOT / "scenarios" / "nightly-scoring-t4.yaml")
    per_item = load_scenario(ROOT / "scenarios" / "nightly-scoring-t4.yaml",
                             ["serving.batch_size=1", "serving.checkpoint.every_batches=1280"])  # fmt: skip
    spot = load_scenario(ROOT / "scenarios" / "nightly-scoring-a10g-spot.yaml",
                         ["serving.workers=8", "serving.spot.monthly_interruption_probability=null",
                          "serving.spot.interruptions_per_hour=2"])  # fmt: skip
    cases: list[tuple[str, Callable[[], object]]] = [
        ("nightly-scoring-t4: 1M items, 15,625 batches, 2 workers", lambda: simulate(nightly)),
        ("same job at batch size 1: 1M batches", lambda: simulate(per_item)),
        ("spot A10G, 8 workers, 2 reclaims per worker-hour", lambda: simulate(spot)),
        ("--solve hardware on nightly-scoring-t4 (3 candidates)", lambda: cheapest_hardware(nightly)),
    ]
    for label, run in cases:
        print(f"{label:<62} {fastest_s(run, args.repeat):8.3f} s (fastest of {args.repeat})")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    print(f"{'peak resident memory of this process':<62} {peak_mb:8.0f} MB")


if __name__ == "__main__":
    main()

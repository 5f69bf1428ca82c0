"""How fast capsim simulates the streaming and async modes: an hour of the bundled IoT topic around
its evening peak (~28M events, 12 partitions, KEDA and rebalances), the same with greedy polls of
one record (the worst case: one batch per event), and four hours of the async image queue.

Run: python benchmarks/streaming_async_speed.py [--repeat N] (prints the fastest of N runs and the
simulated events per wall-clock second; asserts nothing). Runs use --no-request-log (histograms).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from capsim import load_scenario, simulate

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    iot = ROOT / "scenarios" / "iot-anomaly-streaming.yaml"
    peak_hour = ["duration_s=3600", "warmup_s=300", "workload.arrival.start_time_h=18.5"]
    cases = [
        ("iot-anomaly-streaming, 18:30-19:30", load_scenario(iot, peak_hour)),
        ("iot-anomaly-streaming, 10 min, max_poll_records=1, 12 fixed consumers",
         load_scenario(iot, ["duration_s=600", "warmup_s=60", "workload.arrival.start_time_h=12",
                             "serving.max_poll_records=1", "serving.autoscaling=null", "serving.consumers=12",
                             "service.base_ms=0.05", "service.per_item_ms=0.1"])),
        ("async-image-processing, 4 h", load_scenario(ROOT / "scenarios" / "async-image-processing.yaml")),
    ]  # fmt: skip
    for label, scenario in cases:
        best = float("inf")
        events = 0
        for _ in range(args.repeat):
            start = time.perf_counter()
            summary = simulate(scenario, keep_requests=False).summary
            best = min(best, time.perf_counter() - start)
            events = summary["requests"]["arrived"]
        print(f"{label}: {events:,} events (after warm-up) in {best:.1f} s -> {events / best:,.0f} events/s")


if __name__ == "__main__":
    main()

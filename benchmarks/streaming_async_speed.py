"""How fast capsim simulates the streaming and async modes: an hour of the bundled IoT topic around
its evening peak (~28M events, 12 partitions, KEDA and rebalances), the same with greedy polls of
one record (the worst case: one batch per event), four hours of the async image queue, and a day of
it at ten times the job rate (up to 120 workers: ~15M jobs, a queue that grows to ~10^5 at peaks).

Run: python benchmarks/streaming_async_speed.py [--repeat N] [--only TEXT] (prints the fastest of N
runs and the simulated events per wall-clock second; asserts nothing; --only runs the cases whose
label contains TEXT, e.g. async). Runs use --no-request-log (histograms).
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
    parser.add_argument("--only", default="", help="run only the cases whose label contains this text")
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
        ("async-image-processing, 24 h at 600/80 jobs/s, up to 120 workers",
         load_scenario(ROOT / "scenarios" / "async-image-processing.yaml",
                       ["duration_s=86400", "warmup_s=600", "workload.arrival.on_rate_rps=600",
                        "workload.arrival.off_rate_rps=80", "serving.autoscaling.max_replicas=120"])),
    ]  # fmt: skip
    for label, scenario in cases:
        if args.only not in label:
            continue
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

"""A simulated 24-hour diurnal day peaking at 2,000 requests/s under a Kubernetes HPA, in
bounded-memory mode (`--no-request-log`): wall time and peak memory.

Targets (issue 3): under 60 s and under 1 GB. Run: python benchmarks/autoscale_day.py [--hours H]
(prints figures; asserts nothing). With --hours below 24 the day is compressed into that many hours
(same shape and peak), to measure the rate of simulation on a shorter run.
"""

from __future__ import annotations

import argparse
import resource
import time

from capsim import simulate
from capsim.scenario import validate_scenario


def day_scenario(hours: float) -> dict:
    duration_s = hours * 3600.0
    return {
        "name": "bench-diurnal-day",
        "duration_s": duration_s,
        "warmup_s": 0,
        "seed": 1,
        "workload": {"arrival": {"kind": "diurnal", "base_rps": 200, "peak_rps": 2000, "peak_time_h": 14,
                                 "period_s": duration_s}},
        "service": {"kind": "linear", "base_ms": 5.0, "per_item_ms": 0.6, "cv": 0.15},
        "hardware": {"name": "A10G"},
        "serving": {
            "mode": "realtime",
            "replicas": 4,
            "batching": {"max_batch_size": 32, "max_wait_ms": 3},
            "load_balancer": "least_outstanding",
            "autoscaling": {"kind": "hpa", "min_replicas": 2, "max_replicas": 40, "metric": "utilization",
                            "target": 0.6},
        },
        "slo": {"latency_ms": 50, "percentile": 99},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0)
    args = parser.parse_args()
    scenario = validate_scenario(day_scenario(args.hours), "bench")
    # Load (or, the first time on a machine, compile) the data plane outside the timing: that is a
    # one-off per machine, not a cost of simulating the day.
    warm_start = time.perf_counter()
    simulate(validate_scenario(day_scenario(0.01), "warm-up"), keep_requests=False)
    print(f"(compiled data plane loaded in {time.perf_counter() - warm_start:.1f} s, not counted below)")
    start, cpu_start = time.perf_counter(), time.process_time()
    result = simulate(scenario, keep_requests=False)
    wall_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    arrived = s["requests"]["arrived"]
    print(f"{args.hours:g} simulated hours, {arrived:,} requests, HPA, --no-request-log, {s['engine']} engine")
    print(f"  wall time {wall_s:.1f} s, CPU time {cpu_s:.1f} s (target < 60 s for 24 h)   "
          f"{arrived / wall_s:,.0f} simulated req/s ({arrived / cpu_s:,.0f} per CPU second)")  # fmt: skip
    if args.hours < 24:
        # The real day has the same shape over 24 h: its expected request count at this rate.
        day_requests = scenario.workload.arrival.mean_rate_rps(86400.0) * 86400.0
        print(f"  a real day holds ~{day_requests / 1e6:.0f}M requests: ~{day_requests / (arrived / cpu_s):,.0f} s "
              f"of CPU at this rate (an estimate; run without --hours to measure it)")  # fmt: skip
    print(f"  peak memory (max RSS of this process) {peak_rss_mb:,.0f} MB (target < 1024 MB)")
    print(f"  replicas mean {s['replicas']['mean']:.1f} (min {s['replicas']['min']}, max {s['replicas']['max']}), "
          f"p99 {s['latency_ms']['p99']:.1f} ms, SLO attainment {100 * s['slo']['attainment']:.2f}%, "
          f"cost ${s['cost']['usd']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()

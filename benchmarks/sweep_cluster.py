"""What running a sweep's variants on Dask costs against local worker processes: the same sweep of the
bundled quickstart scenario (shortened) on `--jobs` local processes, on a Dask LocalCluster of as many
processes (its start, its workers' imports and its stop included, as a user pays them) and in this
process, and whether all three give identical rows.

Run: python benchmarks/sweep_cluster.py [--jobs N] [--duration-s S] (prints wall times and their ratio
to the in-process run; asserts nothing). Run it once beforehand if the data plane's compile cache is
cold: every fresh worker process would otherwise compile it and the figures would time the compiler.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from capsim.sweep import SweepResult, parse_axis, run_sweep

ROOT = Path(__file__).resolve().parents[1]
GRID = ["serving.replicas=2..9", "serving.batching.max_wait_ms=0..4:1", "serving.load_balancer=round_robin,random"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=60.0)
    args = parser.parse_args()
    scenario = ROOT / "scenarios" / "quickstart.yaml"
    axes = [parse_axis(text) for text in GRID]
    overrides = [f"duration_s={args.duration_s}", "warmup_s=0"]
    runs: list[tuple[str, SweepResult, float]] = []
    # The pools first: a process forked after this one had run variants would inherit its compiled loop.
    for label, jobs, cluster in [(f"{args.jobs} local processes", args.jobs, None),
                                 (f"Dask LocalCluster, {args.jobs} workers", args.jobs, "local"),
                                 ("in this process", 1, None)]:  # fmt: skip
        start = time.perf_counter()
        result = run_sweep(scenario, axes, overrides, jobs=jobs, cluster=cluster, force=True)
        runs.append((label, result, time.perf_counter() - start))
    baseline_s = runs[-1][2]
    print(f"quickstart, {len(runs[0][1].rows)} variants of {args.duration_s:g} simulated s each")
    for label, _, wall_s in runs:
        print(f"{label:<36} {wall_s:8.2f} s  ({baseline_s / wall_s:4.2f}x the in-process speed)")
    rows = [json.dumps(result.rows, sort_keys=True, default=float) for _, result, _ in runs]
    print(f"identical rows in all three: {len(set(rows)) == 1}")


if __name__ == "__main__":
    main()

"""Print what a `capsim loadtest` run folder measured on a GPU: load, latency, batches, server
overhead and the GPU telemetry (NVML samples and the server's refserver_gpu_* gauges).

    python benchmarks/gpu/inspect_run.py RUN_FOLDER [--brief]

Used by benchmarks/gpu/run_on_device.sh after each run; works on any run folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq


def describe(run: Path, brief: bool) -> list[str]:
    """Lines describing the run folder `run`."""
    summary = json.loads((run / "summary.json").read_text())
    lat = summary.get("latency_ms", {})
    lines = [
        f"{run.name}: offered {summary.get('offered_rps')} req/s, achieved {summary.get('achieved_rps')}, "
        f"throughput {summary.get('throughput_rps')} req/s; p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms; "
        f"valid {summary.get('valid')} {summary.get('invalid_reasons') or ''}"
    ]
    requests = pq.read_table(run / "requests.parquet")
    ok = requests.filter(pc.equal(requests["status"], 200))
    if ok.num_rows and "server_compute_ms" in ok.column_names:
        latency = ok["latency_ms"].to_numpy(zero_copy_only=False)
        compute = ok["server_compute_ms"].to_numpy(zero_copy_only=False)
        queue = ok["server_queue_ms"].to_numpy(zero_copy_only=False)
        outside = latency - compute - queue
        lines.append(
            f"  per request (n={ok.num_rows}): p50 latency {np.nanmedian(latency):.3f} ms, p50 compute "
            f"{np.nanmedian(compute):.3f} ms, p50 queue {np.nanmedian(queue):.3f} ms, p50 latency - compute "
            f"{np.nanmedian(latency - compute):.3f} ms, p50 outside the batcher {np.nanmedian(outside):.3f} ms"
        )
    batches_path = run / "batches.parquet"
    if batches_path.exists():
        batches = pq.read_table(batches_path)
        sizes = batches["size"].to_numpy()
        busy = (batches["end_s"].to_numpy() - batches["start_s"].to_numpy()) * 1e3
        if sizes.size:
            lines.append(
                f"  batches: {sizes.size}, mean size {sizes.mean():.2f}, max {sizes.max()}, "
                f"p50 batch time {np.median(busy):.3f} ms"
            )
    tel = summary.get("telemetry", {})
    lines.append(f"  telemetry: nvml {tel.get('nvml')}, prometheus ok {tel.get('prometheus', {}).get('ok')}")
    if brief:
        return lines
    telemetry = pq.read_table(run / "telemetry.parquet").to_pandas()
    nvml = telemetry[telemetry["source"] == "nvml"]
    for metric, rows in nvml.groupby("metric"):
        values = rows["value"].to_numpy()
        lines.append(
            f"  nvml {metric}: n={values.size} min {values.min():.4g} mean {values.mean():.4g} max {values.max():.4g}"
        )
    prom = telemetry[(telemetry["source"] == "prometheus") & telemetry["metric"].str.startswith("refserver_gpu")]
    for metric, rows in prom.groupby("metric"):
        values = rows["value"].to_numpy()
        lines.append(f"  prometheus {metric}: n={values.size} min {values.min():.4g} max {values.max():.4g}")
    if nvml.empty:
        lines.append("  NO NVML SAMPLES in telemetry.parquet")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--brief", action="store_true", help="no telemetry breakdown")
    args = parser.parse_args()
    if not (args.run / "summary.json").is_file():
        print(f"error: {args.run}: no summary.json (not a finished run folder)", file=sys.stderr)
        return 2
    print("\n".join(describe(args.run, args.brief)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

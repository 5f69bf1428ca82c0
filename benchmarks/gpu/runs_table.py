"""Print a markdown table of load-test runs: one row per run folder or summary.json.

    python benchmarks/gpu/runs_table.py benchmarks/data/h100/summaries/*.json
    python benchmarks/gpu/runs_table.py benchmarks/data/h100/runs/*

For a run folder, the mean batch size and the median executor time per batch come from its
batches.parquet; for a bare summary those columns are blank.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def row(path: Path) -> str:
    """One table row for a run folder or a summary.json."""
    summary_path = path / "summary.json" if path.is_dir() else path
    s = json.loads(summary_path.read_text())
    name = path.name if path.is_dir() else path.stem
    lat = s["latency_ms"]
    batch, busy = "", ""
    if path.is_dir() and (path / "batches.parquet").exists():
        b = pq.read_table(path / "batches.parquet")
        sizes = b["size"].to_numpy()
        batch = f"{sizes.mean():.2f}"
        busy = f"{np.median((b['end_s'].to_numpy() - b['start_s'].to_numpy()) * 1e3):.3f}"
    reasons = "; ".join(s.get("invalid_reasons") or [])
    return (
        f"| {name} | {s['offered_rps']:g} | {s['achieved_rps']:.0f} | {s['throughput_rps']:.0f} | {lat['p50']:g} | "
        f"{lat['p99']:g} | {batch} | {busy} | {'yes' if s['valid'] else 'no: ' + reasons} |"
    )


def main() -> int:
    paths = [Path(p) for p in sys.argv[1:]]
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    print("| run | offered rps | sent rps | completed rps | p50 ms | p99 ms | mean batch | p50 batch ms | valid |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Writing a plan's `--out` folder (docs/plan.md): plan.json, candidates.csv, the cache, and each
traffic level's pick simulated again and written as `capsim simulate --out` writes a run folder."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from capsim.atomic import atomic_write_json, atomic_write_text
from capsim.plan.cache import ResultCache
from capsim.plan.run import PlanRun
from capsim.scenario import Scenario

CSV_COLUMNS = (
    "level", "hardware", "fleet", "replicas", "min_replicas", "max_replicas", "autoscaler", "max_wait_ms",
    "cost_usd_per_h", "cost_usd_per_month", "usd_per_million_requests", "usd", "makespan_s", "p50_ms",
    "tail_ms", "tail_percentile", "tail_ci95_ms", "slo_attainment", "utilization", "rho_peak", "headroom",
    "replications", "requests", "status", "reason", "vary",
)  # fmt: skip


def candidates_csv(document: dict[str, Any]) -> str:
    """Every candidate row of every level, flat (nested fields as JSON)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for index, level in enumerate(document["levels"]):
        for row in level["candidates"]:
            flat = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()}
            writer.writerow({**flat, "level": index})
    return buffer.getvalue()


def pick_folder_name(level: int) -> str:
    """`pick` for the first traffic level, `pick-<i>` for the others."""
    return "pick" if level == 0 else f"pick-{level}"


def write_plan_folder(
    run: PlanRun, folder: Path, cache: ResultCache, seed: int, keep_requests: Callable[[Scenario], bool]
) -> list[Path]:
    """Write the plan into `folder` (a staged output folder); returns the files written.

    Each level's pick runs once more (one replication, the plan's seed; every request kept when
    `keep_requests(scenario)` says so, as `capsim simulate` decides) for its time series and plots.
    """
    from capsim.engine import simulate
    from capsim.report.run_folder import write_run_folder

    written: list[Path] = []
    for level, scenario in enumerate(run.pick_scenarios):
        if scenario is None:
            continue
        name = pick_folder_name(level)
        result = simulate(scenario, seed=seed, replications=1, keep_requests=keep_requests(scenario))
        written.extend(write_run_folder(result, folder / name))
        run.document["pick_folders"][level] = name
    plan_path = folder / "plan.json"
    atomic_write_json(plan_path, run.document)
    csv_path = folder / "candidates.csv"
    atomic_write_text(csv_path, candidates_csv(run.document))
    return [plan_path, csv_path, *written, *cache.write_to(folder)]

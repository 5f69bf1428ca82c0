"""`capsim validate RUN_DIR --profile P`: replay a measured run in the simulator and compare.

Prints measured vs simulated — throughput, latency p50/p90/p99, queue wait, batch-size distribution —
with relative errors; writes `validation.json` into the run folder (atomically), and with `--plot`
both latency CDFs on one chart (`validation_cdf.png`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from capsim.cli.app import app
from capsim.cli.calibrate import (
    InstancesOption,
    MaxBatchOption,
    MaxWaitOption,
    QueueCapacityOption,
    TimeoutOption,
    server_from_flags,
)
from capsim.errors import CapsimInputError

_ROWS = (
    ("throughput (req/s)", "throughput_rps", None),
    ("latency mean (ms)", "latency_ms", "mean"),
    ("latency p50 (ms)", "latency_ms", "p50"),
    ("latency p90 (ms)", "latency_ms", "p90"),
    ("latency p99 (ms)", "latency_ms", "p99"),
    ("queue wait p50 (ms)", "queue_wait_ms", "p50"),
    ("queue wait p99 (ms)", "queue_wait_ms", "p99"),
    ("batch size mean", "batch_size", "mean"),
    ("utilization", "utilization", None),
)


def _value(stats: dict[str, Any], key: str, sub: str | None) -> float | None:
    node = stats.get(key)
    if sub is not None:
        node = node.get(sub) if isinstance(node, dict) else None
    return float(node) if isinstance(node, int | float) else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def comparison_table(row: dict[str, Any]) -> Table:
    """Measured vs simulated for one load point, with relative errors and the batch-size buckets."""
    title = f"{row['label']}" + (f" — {row['rate_rps']:g} req/s offered" if row.get("rate_rps") else "")
    table = Table(title=title, header_style="bold")
    for name in ("", "measured", "simulated", "error"):
        table.add_column(name, justify="left" if not name else "right")
    m, s = row["measured"], row["simulated"]
    for name, key, sub in _ROWS:
        if key == "queue_wait_ms":  # name the span: both sides measure the same one (compare.py)
            name = name.replace("(ms)", f"(ms, {row.get('queue_wait_basis') or 'not comparable'})")
        mv, sv = _value(m, key, sub), _value(s, key, sub)
        error = (sv - mv) / mv if mv and sv is not None else None
        table.add_row(name, _fmt(mv), _fmt(sv), "–" if error is None else f"{100 * error:+.1f}%")
    table.add_row("rejected / timed out", f"{m['rejected']} / {m['timed_out']}", f"{s['rejected']} / {s['timed_out']}",
                  "")
    m_dist = (m.get("batch_size") or {}).get("distribution") or {}
    s_dist = (s.get("batch_size") or {}).get("distribution") or {}
    for bucket in sorted(set(m_dist) | set(s_dist), key=lambda b: int(b.split("-")[0])):
        table.add_row(f"  batches of {bucket}", f"{100 * m_dist.get(bucket, 0.0):.1f}%",
                      f"{100 * s_dist.get(bucket, 0.0):.1f}%", "")
    tvd = row["relative_error"].get("batch_size.distribution_tvd")
    if tvd is not None:
        table.add_row("  batch-size distribution distance (TVD)", "", "", f"{tvd:.3f}")
    extra = row.get("unmodelled")
    if extra:
        # Not modelled by the replay: shown so that a latency miss can be traced to its cause.
        outside = extra["outside_server_ms"]
        front = " + the front end's queue" if extra.get("frontend_replayed") else ""
        table.add_row("time outside the server p50 / p99 (ms)", f"{_fmt(outside['p50'])} / {_fmt(outside['p99'])}",
                      f"{_fmt(extra['overhead_ms'])} (constant){front}", "")
        late = extra.get("window_lateness_ms")
        if late:
            table.add_row("batching window closed late p50 / p90 (ms)",
                          f"{_fmt(late['median_ms'])} / {_fmt(late['p90_ms'])}",
                          "as measured (replayed)" if extra.get("window_late_replayed") else "0 / 0", "")
    return table


@app.command("validate")
def validate_command(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by capsim loadtest")],
    profile: Annotated[Path, typer.Option(help="service-time profile to validate (capsim calibrate / profile)")],
    max_batch_size: MaxBatchOption = None,
    max_wait_ms: MaxWaitOption = None,
    instances: InstancesOption = 1,
    queue_capacity: QueueCapacityOption = None,
    timeout_ms: TimeoutOption = None,
    overhead_ms: Annotated[float | None, typer.Option(help="fixed per-request overhead (default: the profile's "
                                                      "calibrated value, else 0)")] = None,
    frontend: Annotated[bool, typer.Option("--frontend/--no-frontend", help="replay the front end the profile's "
                                           "calibration fitted (serving.frontend), if any")] = True,
    seed: Annotated[int, typer.Option(help="seed of the replay")] = 0,
    replications: Annotated[int, typer.Option(help="replications of the replay (pooled)")] = 3,
    plot: Annotated[bool, typer.Option("--plot", help="also write validation_cdf.png (both latency CDFs)")] = False,
    record: Annotated[bool, typer.Option("--record", help="append the errors to the profile's provenance")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print only the comparison JSON on stdout")] = False,
) -> None:
    """Replay a measured run with a profile and print measured vs simulated with relative errors."""
    from capsim.calibration.accuracy import error_line
    from capsim.calibration.frontend_fit import describe_frontend
    from capsim.calibration.validate import record_in_profile, validate_run, write_validation

    if replications < 1:
        raise CapsimInputError("expected an integer >= 1", field="--replications")
    if overhead_ms is not None and overhead_ms < 0:
        raise CapsimInputError("expected a number >= 0", field="--overhead-ms")
    server = server_from_flags(max_batch_size, max_wait_ms, instances, queue_capacity, timeout_ms)
    result = validate_run(run_dir, profile, server=server, overhead_ms=overhead_ms, seed=seed,
                          replications=replications, frontend=frontend)
    written = write_validation(run_dir, result, plot)
    if record:
        record_in_profile(profile, result)
    err = Console(stderr=True)
    doc = result.document
    if json_output:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        console = Console(width=max(Console().width, 132))  # the tables are wide; never wrap them
        for row in doc["points"]:
            console.print(comparison_table(row))
        console.print(error_line(doc["errors"]))
        console.print(f"overhead {doc['overhead_ms']:.3f} ms ({doc['overhead_source']}); "
                      f"{doc['replications']} replication(s) pooled")
        if doc["frontend"]:
            console.print(f"front end (serving.frontend, from the profile): {describe_frontend(doc['frontend'])}")
        console.print("wrote " + ", ".join(str(p) for p in written))
    for warning in doc["warnings"]:
        err.print(f"warning: {warning}")

"""A sweep as a table, files and a cost-versus-latency chart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from capsim.atomic import atomic_write, atomic_write_json
from capsim.sweep import SweepResult

_METRICS: list[tuple[str, str, str]] = [
    ("throughput_rps", "rps", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("p99_ms", "p99 ms", "{:.2f}"),
    ("slo_attainment", "SLO att.", "{:.4f}"),
    ("utilization", "util.", "{:.3f}"),
    ("replicas_mean", "mean repl.", "{:.2f}"),
    ("usd_per_hour", "$/h", "{:.3f}"),
    ("usd_per_million_requests", "$/1M req", "{:.3f}"),
]

# A batch job is judged by when it finishes and what the whole run costs.
_JOB_METRICS: list[tuple[str, str, str]] = [
    ("makespan_s", "makespan s", "{:.0f}"),
    ("throughput_rps", "items/s", "{:.1f}"),
    ("utilization", "util.", "{:.3f}"),
    ("usd", "$ total", "{:.2f}"),
]


def _cell(value: Any, fmt: str = "{}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value) if isinstance(value, (int, float)) else str(value)


def sweep_table(result: SweepResult) -> Table:
    """One row per variant; the cheapest variant that meets the SLO is marked ★."""
    best = result.best_index
    goal = "the deadline" if result.is_job else "the SLO"
    table = Table(title=f"capsim sweep (★ = cheapest meeting {goal})", title_justify="left")
    table.add_column("")
    short = [axis.path.rsplit(".", 1)[-1] for axis in result.axes]
    unique = len(set(short)) == len(short)
    for axis, name in zip(result.axes, short, strict=True):
        table.add_column(name if unique else axis.path, justify="right")
    metrics = _JOB_METRICS if result.is_job else _METRICS
    for _, header, _ in metrics:
        table.add_column(header, justify="right")
    table.add_column("deadline met" if result.is_job else "SLO met", justify="center")
    for i, row in enumerate(result.rows):
        cells = [_cell(row[a.path]) for a in result.axes]
        cells += [_cell(row[key], fmt) for key, _, fmt in metrics]
        cells.append(_cell(row["slo_met"]))
        table.add_row("★" if i == best else "", *cells, style="bold green" if i == best else None)
    return table


def _cost_latency_chart(result: SweepResult, path: Path) -> None:
    """Each variant at (cost, p99) — for a job (cost, makespan) — green where it meets the goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y_key = "makespan_s" if result.is_job else "p99_ms"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    best = result.best_index
    for i, row in enumerate(result.rows):
        x, y = row[result.cost_key], row[y_key]
        if x is None or y is None:
            continue
        colour = "tab:green" if row["slo_met"] else "tab:red"
        ax.scatter(x, y, color=colour, s=70 if i == best else 25, marker="*" if i == best else "o", zorder=3)
        label = ", ".join(f"{a.path.rsplit('.', 1)[-1]}={row[a.path]}" for a in result.axes)
        ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    slo = next((s.get("slo") for s in result.summaries if s.get("slo")), None) or {}
    if result.is_job and slo.get("deadline_s") is not None:
        ax.axhline(slo["deadline_s"], color="grey", ls="--", lw=1, label=f"deadline {slo['deadline_s']:g} s")
        ax.legend(loc="upper right", fontsize=8)
    elif not result.is_job and slo.get("percentile") == 99.0:
        ax.axhline(slo["latency_ms"], color="grey", ls="--", lw=1, label=f"SLO p99 ≤ {slo['latency_ms']:g} ms")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("cost of the job, USD" if result.is_job else "cost, USD per hour")
    ax.set_ylabel("makespan, s" if result.is_job else "p99 latency, ms")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    goal = "the deadline" if result.is_job else "the SLO"
    ax.set_title(f"Sweep: cost against {'makespan' if result.is_job else 'p99'} (green meets {goal}, ★ cheapest)",
                 fontsize=9)  # fmt: skip
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def write_sweep_folder(result: SweepResult, out_dir: Path) -> list[Path]:
    """`sweep.csv`, `sweep.parquet` (one row per variant), `summaries.json` (every full summary with
    its varied values) and `cost_vs_p99.png` (a job: `cost_vs_makespan.png`); each written atomically."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(result.rows)
    frame.insert(0, "best", [i == result.best_index for i in range(len(frame))])
    chart = "cost_vs_makespan.png" if result.is_job else "cost_vs_p99.png"
    names = ("sweep.csv", "sweep.parquet", "summaries.json", chart)
    written = [out_dir / name for name in names]
    atomic_write(written[0], lambda tmp: frame.to_csv(tmp, index=False))
    atomic_write(written[1], lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write_json(written[2], {
        "axes": [{"path": a.path, "values": list(a.values)} for a in result.axes],
        "best": result.best_index,
        "variants": [{"varied": v, "summary": s} for v, s in zip(result.variants, result.summaries, strict=True)],
    })  # fmt: skip
    _cost_latency_chart(result, written[3])
    return written

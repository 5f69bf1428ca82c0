"""A sweep as a table, files and a cost-versus-tail-latency chart.

The tail shown is the SLO's own percentile (capsim/sweep.py says why), unstable variants are marked
and never starred, and when the load is varied each load level gets its own ★ and its own line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from capsim.atomic import atomic_write, atomic_write_json
from capsim.report.axes import percentile_name, slo_label
from capsim.sweep import SweepResult, tail_key, values_text

# (row key, header, format); "{tail}" in a header is the SLO's percentile ("p95").
_METRICS: list[tuple[str, str, str]] = [
    ("throughput_rps", "rps", "{:.1f}"),
    ("p50_ms", "p50 ms", "{:.2f}"),
    ("tail_latency_ms", "{tail} ms", "{:.2f}"),
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


def sweep_slo(result: SweepResult) -> dict[str, Any]:
    """The SLO block of the first variant that has one ({} when none does)."""
    return next((s["slo"] for s in result.summaries if (s.get("slo") or {}).get("latency_ms") is not None), {})


def tail_name(result: SweepResult) -> str:
    """What the tail column holds: `p95`, `p99.9`, … (`max` when the SLO is above p99.9)."""
    percentile = result.rows[0]["tail_percentile"] if result.rows else 99.0
    return "max" if percentile >= 100.0 else percentile_name(percentile)


def _stability_cell(row: dict[str, Any]) -> str:
    rho = row.get("rho")
    if rho is None and not row.get("unstable"):
        return "—"  # no offered load to judge (a batch job)
    text = "∞" if rho is None else f"{rho:.2f}"  # None and unstable: no capacity at all
    return f"[red]{text} unstable[/red]" if row["unstable"] else text


def _short_names(result: SweepResult) -> dict[str, str]:
    """Each varied path's last component (`replicas`), or the whole path where two would clash."""
    short = {axis.path: axis.path.rsplit(".", 1)[-1] for axis in result.axes}
    return short if len(set(short.values())) == len(short) else {path: path for path in short}


def _short_text(result: SweepResult, values: dict[str, Any]) -> str:
    names = _short_names(result)
    return ", ".join(f"{names[path]}={value}" for path, value in values.items())


def sweep_table(result: SweepResult) -> Table:
    """One row per variant; the cheapest stable variant meeting the SLO (per load level when the
    load is varied) is marked ★; ρ = offered load / capacity, marked unstable at 1 or more."""
    best = set(result.best_indices)
    if result.is_job:
        title = "capsim sweep (★ = cheapest meeting the deadline)"
    else:
        slo = slo_label(sweep_slo(result))
        goal = f"the {slo}" if slo else "the SLO"
        per_level = ", at each load level" if result.load_axes else ""
        title = f"capsim sweep (★ = cheapest stable variant meeting {goal}{per_level}; ρ = offered load / capacity)"
    table = Table(title=title, title_justify="left")
    table.add_column("")
    for name in _short_names(result).values():
        table.add_column(name, justify="right")
    metrics = _JOB_METRICS if result.is_job else _METRICS
    tail = tail_name(result)
    for _, header, _ in metrics:
        table.add_column(header.format(tail=tail), justify="right")
    if not result.is_job:
        table.add_column("ρ", justify="right")
    table.add_column("deadline met" if result.is_job else "SLO met", justify="center")
    for i, row in enumerate(result.rows):
        cells = [_cell(row[a.path]) for a in result.axes]
        cells += [_cell(row[key], fmt) for key, _, fmt in metrics]
        if not result.is_job:
            cells.append(_stability_cell(row))
        cells.append(_cell(row["slo_met"]))
        table.add_row("★" if i in best else "", *cells, style="bold green" if i in best else None)
    return table


def verdict_lines(result: SweepResult) -> list[str]:
    """What the sweep concludes, in lines for the terminal (rich markup): the chosen variant (one
    per load level), or why none is, and how many variants are unstable."""
    lines = []
    if result.partial:
        lines.append(f"[yellow]interrupted: {len(result.rows)} of {result.variants_total} variants finished; "
                     "any ★ is chosen among those only[/yellow]")  # fmt: skip
    if not result.rows:
        return lines
    if not result.is_job and not sweep_slo(result):
        return [*lines, "[yellow]the scenario has no slo section, so no variant is marked[/yellow]"]
    goal = "the deadline" if result.is_job else "the SLO"
    for level, indices in result.load_levels():
        at = f"at {values_text(level)}: " if level else ""
        best = result.best_in(indices)
        if best is None:
            lines.append(f"[yellow]{at}no stable variant meets {goal}[/yellow]")
            continue
        varied = {p: v for p, v in result.variants[best].items() if p not in level}
        chosen = values_text(varied) or "the only variant"
        row = result.rows[best]
        price = f"${row['usd']:.2f} for the job" if result.is_job else f"${row['usd_per_hour']:.3f}/h"
        lines.append(f"{at}cheapest meeting {goal}: [bold]{chosen}[/bold] at {price}")
    unstable = sum(1 for row in result.rows if row.get("unstable"))
    if unstable:
        lines.append(f"[red]{unstable} variant(s) unstable[/red] (offered load ≥ capacity): their queues grow for "
                     "as long as the run lasts, so their figures depend on the run length; never chosen")
    return lines


def cost_latency_figure(result: SweepResult) -> Any:
    """The chart: each variant at (cost, tail latency at the SLO's percentile) — a job: (cost,
    makespan) — one colour per load level, its line through the lowest point at each cost (what that
    money buys at that load); filled where it meets the goal, hollow where not, × where unstable; ★
    the chosen variant of each level, described in the legend rather than beside the points (no
    labels to collide)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    from capsim.report.axes import latency_axis

    y_key = "makespan_s" if result.is_job else "tail_latency_ms"
    tail = tail_name(result)
    fig, ax = plt.subplots(figsize=(8, 5))
    colors: Any = plt.get_cmap("tab10")
    best = set(result.best_indices)
    for n, (level, indices) in enumerate(result.load_levels()):
        color = colors(n % 10)
        points = sorted((result.rows[i][result.cost_key], result.rows[i][y_key], i) for i in indices
                        if result.rows[i][result.cost_key] is not None and result.rows[i][y_key] is not None)
        if not points:
            continue
        if level:
            lowest: dict[float, float] = {}
            for x, y, _ in points:
                lowest[x] = min(y, lowest.get(x, math.inf))
            ax.plot(list(lowest), list(lowest.values()), color=color, lw=1.0, alpha=0.6)
        for x, y, i in points:
            row = result.rows[i]
            if row.get("unstable"):
                ax.scatter(x, y, marker="x", color=color, s=36, zorder=3)
            else:
                ax.scatter(x, y, marker="o", s=30, zorder=3, edgecolors=color,
                           facecolors=color if row["slo_met"] else "none")  # fmt: skip
        chosen = [i for i in indices if i in best]
        for i in chosen:
            ax.scatter(result.rows[i][result.cost_key], result.rows[i][y_key], marker="*", s=260, color=color,
                       edgecolors="black", linewidths=0.6, zorder=4)  # fmt: skip
        what = (f"★ {_short_text(result, {p: v for p, v in result.variants[chosen[0]].items() if p not in level})}"
                if chosen else "no variant meets the goal")
        ax.plot([], [], color=color, lw=1.5, label=f"{_short_text(result, level)}: {what}" if level else what)
    slo = sweep_slo(result)
    if result.is_job and slo.get("deadline_s") is not None:
        ax.axhline(slo["deadline_s"], color="crimson", ls="--", lw=1, label=f"deadline {slo['deadline_s']:g} s")
    elif not result.is_job and slo_label(slo) is not None:
        ax.axhline(slo["latency_ms"], color="crimson", ls="--", lw=1, label=slo_label(slo))
    handles, labels = ax.get_legend_handles_labels()
    for marker, face, text in (("o", "grey", "meets the goal"), ("o", "none", "misses it"),
                               ("x", "grey", "unstable (ρ ≥ 1)")):  # fmt: skip
        handles.append(Line2D([], [], ls="", marker=marker, color="grey", markerfacecolor=face, label=text))
        labels.append(text)
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.set_xlabel("cost of the job, USD" if result.is_job else "cost, USD per hour")
    target = slo.get("deadline_s") if result.is_job else slo.get("latency_ms")
    shown = np.array([row[y_key] for row in result.rows if row[y_key] is not None] +
                     ([target] if target is not None else []), dtype=float)  # the goal's line must fit too
    latency_axis(ax, shown, "y", *(("makespan", "s") if result.is_job else (f"{tail} latency", "ms")))
    ax.grid(alpha=0.3)
    per_level = " per load level" if result.load_axes else ""
    ax.set_title(f"Sweep: cost against {'makespan' if result.is_job else tail + ' latency'} (★ cheapest meeting "
                 f"{'the deadline' if result.is_job else 'the SLO'}{per_level})", fontsize=9)  # fmt: skip
    return fig


def _cost_latency_chart(result: SweepResult, path: Path) -> None:
    """Write `cost_latency_figure` as a PNG, atomically."""
    import matplotlib.pyplot as plt

    fig = cost_latency_figure(result)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def chart_name(result: SweepResult) -> str:
    """`cost_vs_makespan.png` for a job, else `cost_vs_<the SLO's percentile key>.png` (`cost_vs_p99.png`)."""
    if result.is_job:
        return "cost_vs_makespan.png"
    return f"cost_vs_{tail_key(sweep_slo(result).get('percentile'))}.png"


def write_sweep_folder(result: SweepResult, out_dir: Path) -> list[Path]:
    """`sweep.csv`, `sweep.parquet` (one row per variant, `best` marking the chosen ones),
    `summaries.json` (every full summary with its varied values; `partial` when the sweep was
    interrupted and holds only the variants that finished) and the chart (`chart_name`); each
    written atomically."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(result.rows)
    best = set(result.best_indices)
    frame.insert(0, "best", [i in best for i in range(len(frame))])
    names = ("sweep.csv", "sweep.parquet", "summaries.json", chart_name(result))
    written = [out_dir / name for name in names]
    atomic_write(written[0], lambda tmp: frame.to_csv(tmp, index=False))
    atomic_write(written[1], lambda tmp: frame.to_parquet(tmp, index=False))
    atomic_write_json(written[2], {
        "axes": [{"path": a.path, "values": list(a.values)} for a in result.axes],
        "best": result.best_index,
        "best_per_load": result.best_indices if result.load_axes else None,
        "warnings": result.warnings,
        "partial": result.partial,  # interrupted: only the variants that finished are listed
        "variants_total": result.variants_total or len(result.rows),
        "variants": [{"varied": v, "summary": s} for v, s in zip(result.variants, result.summaries, strict=True)],
    })  # fmt: skip
    _cost_latency_chart(result, written[3])
    return written

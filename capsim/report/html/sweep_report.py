"""The report of a `capsim sweep --out` folder: the verdict (the ★ variant, per load level when the
load is varied), the table the terminal prints with its ★, and the cost-against-tail-latency chart —
each drawn by capsim/report/sweep.py from the sweep rebuilt out of `summaries.json` and `sweep.parquet`."""

from __future__ import annotations

import math
from typing import Any

from capsim.report.html import blocks, formats
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder


def sweep_result(run: RunFolder) -> Any:
    """The `capsim.sweep.SweepResult` the folder was written from: axes, variants and summaries from
    `summaries.json`, each row rebuilt by `summary_row` with the ρ the sweep computed (`sweep.parquet`)."""
    from capsim.errors import CapsimInputError
    from capsim.sweep import Axis, SweepResult, summary_row

    data = run.json("summaries.json")
    frame = run.parquet("sweep.parquet")
    try:
        axes = [Axis(str(a["path"]), tuple(a["values"])) for a in data["axes"]]
        variants = [dict(v["varied"]) for v in data["variants"]]
        summaries = [dict(v["summary"]) for v in data["variants"]]
    except (KeyError, TypeError) as exc:
        raise CapsimInputError(f"summaries.json lacks {exc}", source=str(run.path)) from None
    rhos: list[float | None] = [None] * len(variants)
    if frame is not None and len(frame) == len(variants) and "rho" in frame:
        for i, (rho, unstable) in enumerate(zip(frame["rho"], frame["unstable"], strict=True)):
            finite = rho is not None and not (isinstance(rho, float) and math.isnan(rho))
            rhos[i] = float(rho) if finite else (math.inf if bool(unstable) else None)
    rows = [summary_row(v, s, rho) for v, s, rho in zip(variants, summaries, rhos, strict=True)]
    return SweepResult(axes, variants, summaries, rows, list(data.get("warnings") or []))


def _plain(markup: str) -> str:
    from rich.text import Text

    return Text.from_markup(markup).plain


def headline(run: RunFolder) -> Headline:
    """The verdict's first line as the title."""
    from capsim.report.sweep import verdict_lines

    result = sweep_result(run)
    lines = verdict_lines(result)
    first = result.summaries[0].get("scenario", run.name) if result.summaries else run.name
    varied = ", ".join(axis.path for axis in result.axes)
    return Headline(f"{first}: {_plain(lines[0]) if lines else 'sweep'}",
                    f"Which of {len(result.rows)} variants ({varied}) is the cheapest that meets the SLO?")


def sections(run: RunFolder) -> list[Section]:
    """Verdict, table with ★, chart, warnings."""
    from capsim.report.sweep import cost_latency_figure, sweep_table, verdict_lines

    result = sweep_result(run)
    lines = [_plain(line) for line in verdict_lines(result)]
    chosen = bool(result.best_indices)
    out = [Section("Answer", blocks.answer(lines[0] if lines else "no verdict", chosen)
                   + blocks.notes(lines[1:]) + blocks.notes(result.warnings, "warn"))]
    out.append(Section("Variants", blocks.rich_table(sweep_table(result))
                       + blocks.paragraph("★ marks the cheapest stable variant meeting the goal. Each variant "
                                          "ran on the same seed (common random numbers), so differences come "
                                          "from the configuration, not the draw.")))  # fmt: skip
    out.append(Section("Cost against latency", blocks.figure(
        cost_latency_figure(result), "Each variant at its cost and its tail latency at the SLO's percentile: "
        "filled where it meets the goal, hollow where not, × where unstable, ★ the choice.")))
    return out


def metrics(run: RunFolder) -> list[Metric]:
    """The variants run, and the chosen variant's cost and tail (the first load level's)."""
    result = sweep_result(run)
    best = result.best_indices[0] if result.best_indices else None
    row: dict[str, Any] = result.rows[best] if best is not None else {}
    unstable = sum(1 for r in result.rows if r.get("unstable"))
    return [Metric("variants", len(result.rows), formats.number),
            Metric("variants meeting the goal", sum(1 for r in result.rows if r.get("slo_met")), formats.number),
            Metric("unstable variants", unstable, formats.number, True),
            Metric("★ cost per hour", row.get("usd_per_hour"), lambda v: formats.usd(v, "h"), True),
            Metric("★ tail latency", row.get("tail_latency_ms"), formats.ms, True),
            Metric("★ utilization", row.get("utilization"), formats.percent, share=True)]  # fmt: skip


def provenance(run: RunFolder) -> list[tuple[str, str]]:
    """The varied axes, and the seed and replications every variant shared."""
    result = sweep_result(run)
    first = result.summaries[0] if result.summaries else {}
    return [("varied", "; ".join(f"{a.path} = {', '.join(str(v) for v in a.values)}" for a in result.axes)),
            ("seed / replications per variant", f"{first.get('seed')} / {first.get('replications')}")]


def _overlay_figure(runs: list[RunFolder]) -> Any:
    """Every variant of each sweep at (cost per hour, tail latency), one colour per sweep, ★ its choice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from capsim.report.axes import latency_axis, slo_label
    from capsim.report.sweep import sweep_slo, tail_name

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors: Any = plt.get_cmap("tab10")
    shown: list[float] = []
    for n, run in enumerate(runs):
        result = sweep_result(run)
        rows = [r for r in result.rows if r.get("usd_per_hour") is not None and r.get("tail_latency_ms") is not None]
        ax.scatter([r["usd_per_hour"] for r in rows], [r["tail_latency_ms"] for r in rows], s=30, color=colors(n),
                   label=run.name)  # fmt: skip
        for i in result.best_indices:
            ax.scatter(result.rows[i]["usd_per_hour"], result.rows[i]["tail_latency_ms"], marker="*", s=260,
                       color=colors(n), edgecolors="black", linewidths=0.6, zorder=4)  # fmt: skip
        shown += [r["tail_latency_ms"] for r in rows]
    slo = sweep_slo(sweep_result(runs[0]))
    if slo_label(slo) is not None:
        ax.axhline(slo["latency_ms"], color="crimson", ls="--", lw=1, label=slo_label(slo))
        shown.append(slo["latency_ms"])
    latency_axis(ax, np.array(shown, dtype=float), "y", f"{tail_name(sweep_result(runs[0]))} latency")
    ax.set_xlabel("cost, USD per hour")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title("Sweeps: cost against tail latency (★ each sweep's choice)", fontsize=10)
    return fig


def overlays(runs: list[RunFolder]) -> list[str]:
    """The sweeps' variants on one cost-against-latency chart (real-time sweeps; a job's has no tail)."""
    if any(sweep_result(run).is_job for run in runs):
        return []
    return [blocks.figure(_overlay_figure(runs), "Each variant of each sweep at its cost per hour and its tail "
                                                 "latency at the SLO's percentile; ★ the cheapest meeting the SLO.")]


REPORT = KindReport("capsim sweep", headline, sections, metrics, overlays, provenance)

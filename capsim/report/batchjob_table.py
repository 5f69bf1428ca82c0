"""Terminal tables of a batch job: its summary, and the answer of `capsim simulate --solve`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from capsim.report.tables import _fmt


def _hours(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds:,.0f} s ({seconds / 3600.0:.3g} h)"


def batch_summary_table(summary: dict[str, Any]) -> Table:
    """Key figures of a batch job: makespan against the deadline, items, throughput, utilization, cost."""
    title = f"{summary['scenario']} — batch job, seed {summary['seed']}, {summary['replications']} replication(s)"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    items, workers, cost, worker_s = summary["items"], summary["workers"], summary["cost"], summary["worker_s"]
    verdict = {True: "met", False: "MISSED", None: "–"}[summary["deadline_met"]]
    if summary["deadline_s"] is not None and summary["slo"].get("met_share") is not None:
        verdict += f" ({100 * summary['slo']['met_share']:.0f}% of replications)"
    ci = summary.get("ci95", {}).get("makespan_s")
    makespan = _hours(summary["makespan_s"]) + (f" ± {ci:.3g} s" if isinstance(ci, float) else "")
    done_at = summary["latency_ms"]
    rows = [
        ("makespan", makespan),
        ("deadline", f"{_hours(summary['deadline_s'])}: {verdict}"),
        ("items done / total", f"{_fmt(items['done'])} / {_fmt(items['total'])}"),
        ("partitions", _fmt(items["partitions"])),
        ("items scored again (lost to reclaims)", _fmt(items["lost"])),
        ("throughput (items/s)", _fmt(summary["throughput_rps"])),
        ("half / 99% of items done by", f"{_hours(_s(done_at['p50']))} / {_hours(_s(done_at['p99']))}"),
        ("batch service mean / p99 (ms)", f"{_fmt(summary['batch_service_ms']['mean'])} / "
                                          f"{_fmt(summary['batch_service_ms']['p99'])}"),
        ("workers initial (spot) / launched",
         f"{workers['initial']} ({workers['initial_spot']}) / {_fmt(workers['launched'])}"),
        ("spot interruptions", _fmt(workers["spot_interruptions"])),
        ("utilization (computing / billed)", _fmt(summary["utilization"])),
        ("worker-hours billed", _fmt(worker_s["billed"] / 3600.0)),
        ("  start-up / read stall / checkpoint / idle (h)", " / ".join(
            _fmt(_hours_or_zero(worker_s[k]), 3) for k in ("startup", "read_stall", "checkpoint", "idle"))),
        ("cost (USD)", f"{_fmt(cost['usd'])} (on demand {_fmt(cost['on_demand_usd'])}, spot {_fmt(cost['spot_usd'])})"),
        ("cost (USD per 1M items)", _fmt(cost["usd_per_million_items"])),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


def _h(seconds: float | None) -> str:
    return "unfinished" if seconds is None else f"{seconds / 3600.0:.3g} h"


def _hours_or_zero(seconds: float) -> float:
    # Idle time is billed minus the phases: rounding leaves ~1e-12 s where there is none.
    return seconds / 3600.0 if abs(seconds) > 1e-6 else 0.0


def _s(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000.0


def print_batch_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the batch table and any warnings."""
    console.print(batch_summary_table(summary))
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")


def solve_table(answers: list[dict[str, Any]], deadline_s: float) -> Table:
    """Each hardware's fewest workers meeting the deadline, cheapest first, with the probes that decided it."""
    table = Table(title=f"fewest workers meeting the deadline ({_hours(deadline_s)})", header_style="bold")
    for column in ("hardware", "workers", "makespan", "cost (USD)", "simulated (workers: makespan, met)"):
        table.add_column(column, justify="left" if column == "hardware" else "right")
    for answer in answers:
        probes = ", ".join(
            f"{p['workers']}: {_h(p['makespan_s'])}{' ✓' if p['met'] else ' ✗'}" for p in answer["probes"]
        )
        workers = "none ≤ max_workers" if answer["workers"] is None else str(answer["workers"])
        table.add_row(answer["hardware"], workers, _h(answer["makespan_s"]), _fmt(answer["usd"]), probes)
    return table

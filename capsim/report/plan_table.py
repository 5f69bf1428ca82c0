"""A plan (plan.json's document, docs/plan.md) on the terminal: each traffic level's candidates as a
table, cheapest first, and the answer in words: the pick, or the closest candidates when none meets."""

from __future__ import annotations

import math
from typing import Any

from rich.table import Table

from capsim.sweep import values_text

_STATUS_STYLE = {"meets": "green", "fails": "red", "unstable": "red", "undecided": "yellow", "pruned": "dim"}


def _num(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return fmt.format(value)


def fleet_text(row: dict[str, Any]) -> str:
    """`4 × L4` for a fixed fleet, `2..9 × L4 (hpa on rps)` under an autoscaler; a job's workers."""
    if row.get("fleet") == "autoscaled":
        scaler = row.get("autoscaler") or {}
        on = f" on {scaler['metric']}" if scaler.get("metric") else ""
        return f"{row['min_replicas']}..{row['max_replicas']} × {row['hardware']} ({scaler.get('kind', '?')}{on})"
    return f"{row['replicas']} × {row['hardware']}"


def _tail_text(row: dict[str, Any]) -> str:
    if row.get("tail_ms") is None:
        return "—"
    half = row.get("tail_ci95_ms")
    return f"{row['tail_ms']:.2f}" + (f" ± {half:.2f}" if half is not None else "")


def _others(row: dict[str, Any]) -> str:
    return values_text({k: v for k, v in (row.get("vary") or {}).items() if k != "serving.batching.max_wait_ms"})


def plan_table(document: dict[str, Any], level: dict[str, Any]) -> Table:
    """One traffic level's evaluated candidates, cheapest first."""
    percentile = (document.get("slo") or {}).get("percentile")
    title = f"{document['scenario']['name']}" + (f" at {values_text(level['load'])}" if level["load"] else "")
    table = Table(title=title)
    job = document.get("kind") == "batch"
    llm = document.get("kind") == "llm"
    p = f"p{percentile:g}" if percentile else "tail"
    middle = (["$/1M out tok", f"TTFT {p} ms", f"TPOT {p} ms"] if llm
              else ["window ms", "$/job" if job else "$/h", "makespan s" if job else "$/month", "p50 ms",
                    f"{p} ms ± 95%"])  # fmt: skip
    if llm:
        middle = ["$/h", "$/month", *middle]
    for name in ["fleet", *middle, "SLO att.", "peak load", "status"]:
        table.add_column(name, justify="left" if name in ("fleet", "status") else "right")
    rows = sorted(level["candidates"], key=lambda r: (r.get("usd") if job else r.get("cost_usd_per_h")) or 0.0)
    for row in rows:
        style = _STATUS_STYLE.get(row["status"], "")
        fleet = fleet_text(row) + (f" [{_others(row)}]" if _others(row) else "")
        cost = _num(row.get("usd"), "{:.2f}") if job else _num(row.get("cost_usd_per_h"), "{:.3f}")
        second = _num(row.get("makespan_s"), "{:,.0f}") if job else _num(row.get("cost_usd_per_month"), "{:,.0f}")
        if llm:
            cells = [cost, second, _num(row.get("usd_per_million_output_tokens"), "{:.2f}"),
                     _num(row.get("ttft_ms"), "{:.1f}"), _num(row.get("tpot_ms"), "{:.2f}")]  # fmt: skip
        else:
            cells = [_num(row.get("max_wait_ms"), "{:g}"), cost, second, _num(row.get("p50_ms"), "{:.2f}"),
                     _tail_text(row)]  # fmt: skip
        table.add_row(fleet, *cells, _num(row.get("slo_attainment"), "{:.4f}"), _num(row.get("rho_peak"), "{:.0%}"),
                      f"[{style}]{row['status']}[/{style}]" if style else row["status"])  # fmt: skip
    return table


def _window(row: dict[str, Any]) -> str:
    """`, window 2 ms` (nothing for an LLM engine, which has no batching window)."""
    return "" if row.get("max_wait_ms") is None else f", window {row['max_wait_ms']:g} ms"


def binding_text(level: dict[str, Any]) -> str:
    """`; sized by the busiest hour, 13:00-14:00 (418 req/s)` for a fixed fleet over a day, else ''."""
    binding = level.get("binding_hour")
    if not binding:
        return ""
    start = int(binding["clock_h"] * 60 + 0.5)
    end = start + 60
    return (f"; sized by the busiest hour, {start // 60 % 24:02d}:{start % 60:02d}-{end // 60 % 24:02d}:"
            f"{end % 60:02d} ({binding['offered_rps']:,.0f} req/s)")


def answer_lines(document: dict[str, Any], level: dict[str, Any]) -> list[str]:
    """The pick in one line (fleet, window, $/h and $/month, tail, headroom), or 'no configuration
    meets the SLO' with the closest candidates."""
    at = f" at {values_text(level['load'])}" if level["load"] else ""
    pick = level["pick"]
    if pick is None:
        lines = [f"[red]no configuration meets the SLO{at}[/red]; the closest:"]
        for row in level["closest"]:
            lines.append(f"  {fleet_text(row)}{_window(row)}: {row['reason']}")
        return lines
    if document.get("kind") == "batch":
        return [f"pick{at}: {fleet_text(pick)}, makespan {pick['makespan_s']:,.0f} s, {pick['usd']:.4g} USD per run"]
    if document.get("kind") == "llm":
        p = f"p{pick['tail_percentile']:g}"
        return [f"pick{at}: {fleet_text(pick)}: {pick['cost_usd_per_h']:.3f} USD/h, "
                f"{pick['cost_usd_per_month']:,.0f} USD/month, "
                f"{_num(pick.get('usd_per_million_output_tokens'), '{:.2f}')} USD per 1M output tokens; "
                f"TTFT {p} {_num(pick.get('ttft_ms'), '{:.1f}')} ms, TPOT {p} {_num(pick.get('tpot_ms'), '{:.2f}')} "
                f"ms ({pick['reason']}); peak load {pick['rho_peak']:.0%} of capacity"
                + binding_text(level)]  # fmt: skip
    return [
        f"pick{at}: {fleet_text(pick)}{_window(pick)}"
        + (f" [{_others(pick)}]" if _others(pick) else "")
        + f": {pick['cost_usd_per_h']:.3f} USD/h, {pick['cost_usd_per_month']:,.0f} USD/month, "
        f"{_num(pick.get('usd_per_million_requests'), '{:.3g}')} USD per 1M requests; "
        f"p{pick['tail_percentile']:g} {_tail_text(pick)} ms; peak load {pick['rho_peak']:.0%} of capacity"
        + binding_text(level)
    ]

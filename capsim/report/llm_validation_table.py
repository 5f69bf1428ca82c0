"""The terminal tables of LLM calibration and validation: measured against simulated TTFT, TPOT, ITL
and E2E, throughput and tokens/s, with relative errors (the real-time tables' style:
capsim/report/validation_table.py)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

_DISTRIBUTIONS = (("TTFT", "ttft_ms"), ("TPOT", "tpot_ms"), ("ITL", "itl_ms"), ("E2E", "latency_ms"))
_KEYS = ("mean", "p50", "p90", "p99")


def _fmt(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.4g}"


def _pct(value: Any) -> str:
    return "–" if not isinstance(value, int | float) else f"{100 * value:+.1f}%"


def llm_comparison_table(row: dict[str, Any]) -> Table:
    """Measured vs simulated for one LLM load point, with relative errors."""
    title = f"{row['label']}" + (f" — {row['rate_rps']:g} req/s offered" if row.get("rate_rps") else "") + \
        f" ({row['server']})"  # fmt: skip
    table = Table(title=title, header_style="bold")
    for name in ("", "measured", "simulated", "error"):
        table.add_column(name, justify="left" if not name else "right")
    m, s, e = row["measured"], row["simulated"], row["relative_error"]
    table.add_row("throughput (req/s)", _fmt(m["throughput_rps"]), _fmt(s["throughput_rps"]), _pct(e["throughput_rps"]))
    for side, name in (("input_per_s", "input tokens/s"), ("output_per_s", "output tokens/s")):
        table.add_row(name, _fmt(m["tokens"][side]), _fmt(s["tokens"][side]), _pct(e[f"tokens.{side}"]))
    for label, key in _DISTRIBUTIONS:
        for sub in _KEYS:
            table.add_row(f"{label} {sub} (ms)", _fmt(m[key][sub]), _fmt(s[key][sub]), _pct(e[f"{key}.{sub}"]))
    table.add_row("completed / measured requests", f"{m['completed']} / {m['requests']}",
                  f"{s['completed']} / {s['requests']}", "")
    table.add_row("engine busy share (simulated)", "", _fmt(s.get("utilization")), "")
    return table


def llm_points_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """One line per load point: measured → simulated TTFT p50/p99, TPOT p50, E2E p50 and throughput."""
    table = Table(title=title, header_style="bold")
    columns = (("TTFT p50", "ttft_ms", "p50"), ("TTFT p99", "ttft_ms", "p99"), ("TPOT p50", "tpot_ms", "p50"),
               ("E2E p50", "latency_ms", "p50"), ("E2E p99", "latency_ms", "p99"))  # fmt: skip
    table.add_column("point")
    table.add_column("engine")
    for name, _, _ in columns:
        table.add_column(f"{name} ms meas→sim", justify="right")
        table.add_column("err", justify="right")
    table.add_column("req/s meas→sim", justify="right")
    table.add_column("err", justify="right")
    for row in rows:
        m, s, e = row["measured"], row["simulated"], row["relative_error"]
        cells = [row["label"] + ("" if row.get("valid", True) else " (invalid)"), row["server"]]
        for _, key, sub in columns:
            cells += [f"{_fmt(m[key][sub])} → {_fmt(s[key][sub])}", _pct(e[f"{key}.{sub}"])]
        cells += [f"{_fmt(m['throughput_rps'])} → {_fmt(s['throughput_rps'])}", _pct(e["throughput_rps"])]
        table.add_row(*cells)
    return table

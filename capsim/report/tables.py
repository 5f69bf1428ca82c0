"""The readable terminal table of a simulation summary."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _with_ci(summary: dict[str, Any], value: Any, *path: str) -> str:
    node: Any = summary.get("ci95", {})
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    text = _fmt(value)
    return f"{text} ± {_fmt(node, 2)}" if isinstance(node, float) else text


def summary_table(summary: dict[str, Any]) -> Table:
    """Key figures of a run: traffic, latency and queue-wait percentiles, utilization, cost, SLO."""
    req = summary["requests"]
    title = f"{summary['scenario']} — seed {summary['seed']}, {summary['replications']} replication(s)"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("requests arrived / completed", f"{req['arrived']} / {req['completed']}"),
        ("rejected / timed out / in flight", f"{req['rejected']} / {req['timed_out']} / {req['in_flight']}"),
        ("throughput (req/s)", _with_ci(summary, summary["throughput_rps"], "throughput_rps")),
    ]
    for key in ("mean", "p50", "p90", "p99", "p999", "max"):
        rows.append((f"latency {key} (ms)", _with_ci(summary, summary["latency_ms"][key], "latency_ms", key)))
    for key in ("mean", "p50", "p99"):
        rows.append(
            (f"queue wait {key} (ms)", _with_ci(summary, summary["queue_wait_ms"][key], "queue_wait_ms", key))
        )
    batch = summary["batch_size"]
    rows += [
        ("batch size mean / p50 / max", f"{_fmt(batch['mean'], 3)} / {_fmt(batch['p50'])} / {_fmt(batch['max'])}"),
        ("utilization", _with_ci(summary, summary["utilization"], "utilization")),
        ("replicas mean (min–max)", f"{_fmt(summary['replicas']['mean'], 3)} "
                                    f"({summary['replicas']['min']}–{summary['replicas']['max']})"),
        ("cost (USD/hour)", _fmt(summary["cost"]["usd_per_hour"])),
        ("cost (USD per 1M requests)", _fmt(summary["cost"]["usd_per_million_requests"])),
    ]  # fmt: skip
    if summary["replicas"].get("billed_gpus_mean") is not None:  # replicas sharing GPUs (MIG, time-slicing, MPS)
        rows.insert(-2, ("GPUs billed (mean)", _fmt(summary["replicas"]["billed_gpus_mean"], 3)))
    rows += _pull_mode_rows(summary)
    rows += _llm_rows(summary)
    slo = summary.get("slo") or {}
    bounds = [f"{name} ≤ {_fmt(slo[key])} ms" for key, name in (("latency_ms", "latency"), ("ttft_ms", "TTFT"),
                                                                   ("tpot_ms", "TPOT")) if slo.get(key) is not None]
    if bounds:
        target = f"p{_fmt(slo['percentile'])} " + ", ".join(bounds)
        verdict = "met" if slo.get("met") else "MISSED"
        rows.append((f"SLO {target}", f"{verdict}, attainment {_fmt(100 * slo['attainment'], 4)}%"))
        rows.append(("goodput (req/s within SLO)", _fmt(slo["goodput_rps"])))
    rows += calibration_rows(summary.get("service") or {})
    for name, value in rows:
        table.add_row(name, value)
    return table


def calibration_rows(service: dict[str, Any]) -> list[tuple[str, str]]:
    """Where a calibrated profile came from and how far its predictions were from measurement
    (`capsim calibrate` records both in the profile's provenance)."""
    provenance = service.get("provenance") or {}
    calibration = provenance.get("calibration") if isinstance(provenance, dict) else None
    if not isinstance(calibration, dict):
        return []
    runs = calibration.get("runs") or []
    fitted = sum(1 for r in runs if r.get("role") == "fit")
    held = len(runs) - fitted
    hardware = (service.get("hardware") or {}).get("name") or "unknown hardware"
    rows = [("service profile", f"calibrated ({calibration.get('method')}) on {hardware}, "
                                f"{calibration.get('created_utc')}: {fitted} load point(s) fitted, {held} held out")]
    head = calibration.get("validation") or {}
    if head:
        kind = "held-out prediction error" if head.get("kind") == "holdout" else "fit error (nothing held out)"
        scope = "≤80% util." if head.get("scope") == "utilization_le_80" else "all loads"

        def pct(value: Any) -> str:
            return "–" if value is None else f"{100 * value:.1f}%"

        rows.append((f"profile {kind}",
                     f"worst p50 {pct(head.get('latency_p50_max_abs'))}, p99 {pct(head.get('latency_p99_max_abs'))}, "
                     f"throughput {pct(head.get('throughput_rps_max_abs'))} ({head.get('points')} point(s), {scope})"))
    return rows


def _llm_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The LLM mode's own figures: token times, token throughput, KV cache, cost per token."""
    if "ttft_ms" not in summary:
        return []
    rows = []
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("itl_ms", "ITL")):
        block = summary[key]
        rows.append((f"{label} mean / p50 / p99 (ms)",
                     f"{_fmt(block['mean'])} / {_fmt(block['p50'])} / {_fmt(block['p99'])}"))
    tokens, kv, cost = summary["tokens"], summary["kv_cache"], summary["cost"]
    rows += [
        ("tokens/s input / output", f"{_fmt(tokens['input_per_s'])} / {_fmt(tokens['output_per_s'])}"),
        ("KV cache utilization / preemptions", f"{_fmt(kv['utilization_mean'], 3)} / {_fmt(kv['preemptions'])}"),
        ("cost (USD per 1M input / output tokens)",
         f"{_fmt(cost['usd_per_million_input_tokens'])} / {_fmt(cost['usd_per_million_output_tokens'])}"),
    ]  # fmt: skip
    return rows


def _pull_mode_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The streaming and async modes' own figures (latency above is event → scored, or submit → seen)."""
    rows: list[tuple[str, str]] = []
    lag = summary.get("lag")
    if isinstance(lag, dict):
        rows.append(("consumer lag mean / p99 / max (records)",
                     f"{_fmt(lag['mean'])} / {_fmt(lag['p99'])} / {_fmt(lag['max'])}"))
        rows.append(("rebalances / partition-seconds paused",
                     f"{_fmt(summary['replicas'].get('rebalances'))} / {_fmt(summary.get('partition_pause_s'))}"))
    depth = summary.get("queue_depth")
    if isinstance(depth, dict):
        rows.append(("queue depth mean / p99 / max (jobs)",
                     f"{_fmt(depth['mean'])} / {_fmt(depth['p99'])} / {_fmt(depth['max'])}"))
    for key, label in (("result_ms", "result stored"), ("poll_delay_ms", "polling delay")):
        block = summary.get(key)
        if isinstance(block, dict):
            rows.append((f"{label} mean / p99 (ms)", f"{_fmt(block['mean'])} / {_fmt(block['p99'])}"))
    if summary.get("polls_per_job") is not None:
        rows.append(("client polls per job", _fmt(summary["polls_per_job"])))
    return rows  # fmt: skip


def print_summary(summary: dict[str, Any], console: Console) -> None:
    """Print the table and any warnings."""
    console.print(summary_table(summary))
    for warning in summary.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")

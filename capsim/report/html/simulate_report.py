"""The report of a `capsim simulate --out` folder: the answer (SLO met or not, at what cost), the
summary table the terminal prints, the latency tail with the SLO at its percentile, the queue,
utilization and replicas over time (hours of the day for a day), and the cost per hour, month and
million requests. Batch jobs show their makespan against the deadline and their progress instead.

Two or more simulate folders side by side overlay their latency tails and their fleets over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.report.html import blocks, formats
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder

SCENARIO_FILE = "scenario.json"  # capsim/report/run_folder.py writes it (pandas-free import here)


def scenario_of(run: RunFolder) -> dict[str, Any]:
    """The resolved scenario the run recorded ({} for a folder from before scenario.json)."""
    data = run.json(SCENARIO_FILE) if run.has(SCENARIO_FILE) else {}
    return data if isinstance(data, dict) else {}


def warmup_s(run: RunFolder) -> float:
    """The warm-up left out of the statistics: the scenario's, else the simulated time the summary
    did not measure."""
    scenario, summary = scenario_of(run), run.json("summary.json")
    if formats.is_number(scenario.get("warmup_s")):
        return float(scenario["warmup_s"])
    simulated, measured = summary.get("simulated_s"), summary.get("measured_s")
    return max(float(simulated) - float(measured), 0.0) if formats.is_number(simulated) and \
        formats.is_number(measured) else 0.0


def clock_h(run: RunFolder) -> float | None:
    """The hour of the day at t = 0 (report/run_folder.clock_start_h), None without a recorded scenario."""
    scenario = scenario_of(run)
    if not scenario:
        return None
    from pydantic import ValidationError

    from capsim.report.run_folder import clock_start_h
    from capsim.scenario import Scenario

    try:
        return clock_start_h(Scenario.model_validate(scenario))
    except (ValidationError, ValueError):
        return None


def _tail_key(summary: dict[str, Any]) -> str:
    from capsim.sweep import tail_key

    return tail_key((summary.get("slo") or {}).get("percentile"))


def per_month(usd_per_hour: Any) -> float | None:
    """A cost rate as a monthly bill (capsim.hardware.cost.monthly_usd, 730 h), None without a rate."""
    from capsim.hardware.cost import monthly_usd

    return monthly_usd(float(usd_per_hour)) if formats.is_number(usd_per_hour) else None


def _is_batch(summary: dict[str, Any]) -> bool:
    return summary.get("mode") == "batch"


def headline(run: RunFolder) -> Headline:
    """`quickstart: p99 12.8 ms, SLO p99 ≤ 50 ms met, $1.61/h`, and the scenario's description as the question."""
    summary, scenario = run.json("summary.json"), scenario_of(run)
    question = scenario.get("description") or "Does this configuration meet its goal at this traffic, and at what cost?"
    if _is_batch(summary):
        verdict = {True: "deadline met", False: "deadline MISSED", None: "no deadline"}[summary.get("deadline_met")]
        hours = summary["makespan_s"] / 3600.0 if formats.is_number(summary.get("makespan_s")) else None
        return Headline(f"{summary['scenario']}: makespan {formats.number(hours, 3)} h, {verdict}, "
                        f"{formats.usd(summary['cost'].get('usd'))}", question)  # fmt: skip
    from capsim.report.axes import slo_label

    key = _tail_key(summary)
    slo = summary.get("slo") or {}
    label = slo_label(slo)
    verdict = f", {label.removeprefix('SLO: ')} {'met' if slo.get('met') else 'MISSED'}" if label else ""
    return Headline(f"{summary['scenario']}: {key} {formats.ms(summary['latency_ms'].get(key))}{verdict}, "
                    f"{formats.usd(summary['cost'].get('usd_per_hour'), 'h')}", question)  # fmt: skip


def fleet_text(summary: dict[str, Any], scenario: dict[str, Any]) -> str:
    """`2 × L4 (AWS g6.xlarge)`, or the autoscaler's bounds with the mean fleet and its cold starts."""
    hardware = (scenario.get("hardware") or {}).get("name") or "replicas"
    replicas = summary.get("replicas") or {}
    autoscaling = (scenario.get("serving") or {}).get("autoscaling")
    if autoscaling:
        return (f"{autoscaling.get('kind', 'an autoscaler').upper()} between {autoscaling.get('min_replicas')} and "
                f"{autoscaling.get('max_replicas')} × {hardware} (mean {formats.number(replicas.get('mean'), 3)}, "
                f"{replicas.get('cold_starts', 0)} cold start(s))")  # fmt: skip
    return f"{formats.number(replicas.get('mean'), 3)} × {hardware}"


def answer_text(run: RunFolder) -> tuple[str, bool]:
    """The run's answer in one paragraph, and whether its goal was met."""
    summary, scenario = run.json("summary.json"), scenario_of(run)
    cost = summary.get("cost") or {}
    if _is_batch(summary):
        met = summary.get("deadline_met")
        deadline = summary.get("deadline_s")
        goal = (f"against a deadline of {formats.number(deadline / 3600.0, 3)} h: {'met' if met else 'MISSED'}"
                if formats.is_number(deadline) else "(no deadline set)")  # fmt: skip
        return (f"The job of {formats.number(summary['items']['total'])} items finishes in "
                f"{formats.number(summary['makespan_s'] / 3600.0, 3)} h {goal}, for {formats.usd(cost.get('usd'))} "
                f"({formats.usd(cost.get('usd_per_million_items'))} per million items).", met is not False)
    from capsim.report.axes import percentile_name

    slo = summary.get("slo") or {}
    key = _tail_key(summary)
    arrived = summary["requests"]["arrived"]
    measured_s = summary.get("measured_s") or summary.get("simulated_s")
    offered = arrived / measured_s / max(summary.get("replications", 1), 1) if measured_s else None
    per_h = cost.get("usd_per_hour")
    money = (f"It costs {formats.usd(per_h, 'h')}, {formats.usd(per_month(per_h))} a month at 730 h, "
             f"{formats.usd(cost.get('usd_per_million_requests'))} per million requests.")
    if slo.get("latency_ms") is None:
        return (f"At {formats.rate(offered)} offered, {fleet_text(summary, scenario)} answer with {key} "
                f"{formats.ms(summary['latency_ms'].get(key))}; the scenario sets no SLO. {money}", True)
    met = bool(slo.get("met"))
    name = percentile_name(float(slo["percentile"]))
    return (f"At {formats.rate(offered)} offered, {fleet_text(summary, scenario)} "
            f"{'meet' if met else 'MISS'} the SLO ({name} ≤ {formats.ms(slo['latency_ms'])}): {key} is "
            f"{formats.ms(summary['latency_ms'].get(key))}, {formats.percent(slo.get('attainment'), 5)} of requests "
            f"within {formats.ms(slo['latency_ms'])}, utilization {formats.percent(summary.get('utilization'))}. "
            f"{money}", met)  # fmt: skip


def summary_html(summary: dict[str, Any]) -> str:
    """The table `capsim simulate` prints (capsim/report/tables.py, batchjob_table.py), as HTML."""
    if _is_batch(summary):
        from capsim.report.batchjob_table import batch_summary_table

        return blocks.rich_table(batch_summary_table(summary))
    from capsim.report.tables import summary_table

    return blocks.rich_table(summary_table(summary))


def latencies_ms(run: RunFolder) -> np.ndarray | None:
    """End-to-end latency (ms) of every completed request after the warm-up (first replication);
    None when the run kept histograms instead of every request."""
    requests = run.parquet("requests.parquet")
    if requests is None or requests.empty:
        return None
    from capsim.report.plots import measured_latency_ms

    first = requests[requests["replication"] == requests["replication"].min()]
    return np.asarray(measured_latency_ms(first, warmup_s(run)), dtype=float)


def _tail_section(run: RunFolder) -> Section | None:
    summary = run.json("summary.json")
    if _is_batch(summary):
        return None  # a job's "latency" is when its items were done: the progress chart shows it
    values = latencies_ms(run)
    if values is None:
        rows = [[key, formats.ms(value)] for key, value in summary["latency_ms"].items()]
        return Section("Latency", blocks.paragraph("The run kept histograms, not every request (--no-request-log), "
                                                   "so the tail is given by its percentiles:")
                       + blocks.table([blocks.Column("statistic"), blocks.Column("latency", True)], rows))
    from capsim.report.plots import latency_ccdf_figure

    fig = latency_ccdf_figure({run.name: values}, summary.get("slo"), f"{summary['scenario']}: latency tail")
    caption = ("Share of requests slower than each latency (1 − CDF, log scale), first replication after the "
               "warm-up. The SLO is met where the curve passes below the red corner: its latency, and the share "
               "its percentile allows to be slower.")
    return Section("Latency tail", blocks.figure(fig, caption))


def time_section(run: RunFolder) -> Section | None:
    """Charts over time: a job's progress; else fleet (when autoscaled), backlog (pull modes), levels."""
    summary = run.json("summary.json")
    series = run.parquet("timeseries.parquet")
    if series is None or series.empty:
        return None
    if _is_batch(summary):
        from capsim.report.batchjob_plots import job_progress_figure

        return Section("Progress", blocks.figure(job_progress_figure(series, summary),
                                                 "Items done over time against the deadline; workers computing "
                                                 "against workers billed."))  # fmt: skip
    from capsim.report.plots import fleet_figure, levels_figure

    warm, clock = warmup_s(run), clock_h(run)
    parts = []
    fleet_columns = {"replicas_desired", "replicas_starting", "replicas"} <= set(series.columns)
    autoscaled = (scenario_of(run).get("serving") or {}).get("autoscaling") or \
        (fleet_columns and series["replicas_desired"].nunique() > 1)
    if autoscaled and fleet_columns:
        parts.append(blocks.figure(fleet_figure(series, summary, warm, clock),
                                   "Traffic and mean latency per interval (top); replicas desired, starting (in "
                                   "their cold start) and ready (bottom). Warm-up shaded."))  # fmt: skip
    if summary.get("mode") in ("streaming", "async"):
        from capsim.report.backlog_plots import backlog_figure

        parts.append(blocks.figure(backlog_figure(series, summary, warm, clock),
                                   "Arrivals, backlog and members over time. Warm-up shaded."))
    parts.append(blocks.figure(levels_figure(series, summary, warm, clock),
                               "Requests queued and executor utilization over time (first replication). "
                               "Warm-up shaded."))  # fmt: skip
    return Section("Over time", "\n".join(parts))


def cost_section(run: RunFolder) -> Section:
    """Price per replica, the fleet's rate per hour and month, this run's bill, per million, energy."""
    from capsim.hardware.cost import HOURS_PER_MONTH

    summary, scenario = run.json("summary.json"), scenario_of(run)
    cost = summary.get("cost") or {}
    hardware = scenario.get("hardware") or {}
    per_h = cost.get("usd_per_hour")
    rows = [
        ["hardware", str(hardware.get("name", "–"))],
        ["price per replica", formats.usd(hardware.get("usd_per_hour"), "h")],
        ["fleet cost rate", formats.usd(per_h, "h")],
        [f"per month ({HOURS_PER_MONTH:g} h)", formats.usd(per_month(per_h))],
        ["this run", formats.usd(cost.get("usd"))],
        ["per million requests" if not _is_batch(summary) else "per million items",
         formats.usd(cost.get("usd_per_million_requests", cost.get("usd_per_million_items")))],
    ]
    energy = summary.get("energy") or {}
    if formats.is_number(energy.get("kwh")):
        rows.append(["energy (this run)", f"{formats.number(energy['kwh'])} kWh"])
    return Section("Cost", blocks.table([blocks.Column("item"), blocks.Column("value", True)], rows))


def sections(run: RunFolder) -> list[Section]:
    """The body of a simulate report."""
    summary = run.json("summary.json")
    text, met = answer_text(run)
    warnings = [str(w) for w in summary.get("warnings") or []]
    out = [Section("Answer", blocks.answer(text, met) + blocks.notes(warnings, "warn")),
           Section("Summary", summary_html(summary))]
    out += [s for s in (_tail_section(run), time_section(run)) if s is not None]
    out.append(cost_section(run))
    return out


def metrics(run: RunFolder) -> list[Metric]:
    """The figures compared side by side."""

    s = run.json("summary.json")
    cost = s.get("cost") or {}
    if _is_batch(s):
        return [Metric("makespan (h)", s["makespan_s"] / 3600.0 if formats.is_number(s.get("makespan_s")) else None,
                       formats.number, True),
                Metric("throughput (items/s)", s.get("throughput_rps"), formats.number, False),
                Metric("utilization", s.get("utilization"), formats.percent, share=True),
                Metric("cost of the job", cost.get("usd"), formats.usd, True)]  # fmt: skip
    latency, slo, replicas = s["latency_ms"], s.get("slo") or {}, s.get("replicas") or {}
    per_h = cost.get("usd_per_hour")
    return [
        Metric("throughput", s.get("throughput_rps"), formats.rate),
        Metric("latency p50", latency.get("p50"), formats.ms, True),
        Metric("latency p99", latency.get("p99"), formats.ms, True),
        Metric("latency p99.9", latency.get("p999"), formats.ms, True),
        Metric("SLO attainment", slo.get("attainment"), lambda v: formats.percent(v, 5), False, share=True),
        Metric("utilization", s.get("utilization"), formats.percent, share=True),
        Metric("replicas (mean)", replicas.get("mean"), formats.number, True),
        Metric("cold starts", replicas.get("cold_starts"), formats.number),
        Metric("cost per hour", per_h, lambda v: formats.usd(v, "h"), True),
        Metric("cost per month (730 h)", per_month(per_h), formats.usd, True),
        Metric("cost per million requests", cost.get("usd_per_million_requests"), formats.usd, True),
    ]


def _fleets_figure(runs: list[RunFolder]) -> Any:
    """Mean latency per interval and ready replicas over time, one colour per run (first replication)."""
    import matplotlib.pyplot as plt

    from capsim.report.axes import readable_log_axis, slo_label
    from capsim.report.plots import finish_time_axes, first_replication, run_time_axis

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
    longest = max(runs, key=lambda r: float(r.json("summary.json").get("simulated_s") or 0.0))
    axis, span_s = run_time_axis(longest.parquet("timeseries.parquet"), longest.json("summary.json"), clock_h(longest))
    for run in runs:
        first = first_replication(run.parquet("timeseries.parquet"))
        x = axis.values(first["time_s"])
        top.plot(x, first["latency_mean_ms"], lw=1.0, label=run.name)
        bottom.step(x, first["replicas"], where="post", lw=1.4, label=run.name)
    slo = longest.json("summary.json").get("slo")
    if slo_label(slo) is not None:
        top.axhline(slo["latency_ms"], color="crimson", ls=":", lw=1.0, label=slo_label(slo))
    top.set_yscale("log")
    readable_log_axis(top.yaxis)
    top.set_ylabel("mean latency per interval (ms, log)")
    bottom.set_ylabel("ready replicas")
    top.legend(loc="upper left", fontsize=8)
    finish_time_axes((top, bottom), axis, span_s, warmup_s(longest))
    top.set_title("Latency and replicas over time, run by run")
    return fig


def overlays(runs: list[RunFolder]) -> list[str]:
    """The latency tails on one chart (runs that kept every request) and the fleets over time."""
    from capsim.report.plots import latency_ccdf_figure

    out = []
    tails = {run.name: values for run in runs if (values := latencies_ms(run)) is not None}
    if len(tails) == len(runs) and not _is_batch(runs[0].json("summary.json")):
        slo = runs[0].json("summary.json").get("slo")
        out.append(blocks.figure(latency_ccdf_figure(tails, slo, "Latency tails"),
                                 "Share of requests slower than each latency (1 − CDF), each run after its "
                                 "warm-up; the SLO of the first run marked."))  # fmt: skip
    if all(run.has("timeseries.parquet") for run in runs) and not _is_batch(runs[0].json("summary.json")):
        out.append(blocks.figure(_fleets_figure(runs), "Mean latency per interval and ready replicas, each run "
                                                       "on the same clock. Warm-up of the longest run shaded."))
    return out


def provenance(run: RunFolder) -> list[tuple[str, str]]:
    """Seed, replications, engine, the service-time model (and a calibrated profile's origin and
    held-out error), the hardware price the run charged."""
    from capsim.report.tables import calibration_rows

    summary, scenario = run.json("summary.json"), scenario_of(run)
    service = summary.get("service") or {}
    items = [("seed / replications", f"{summary.get('seed')} / {summary.get('replications')}"),
             ("simulated / measured", f"{formats.number(summary.get('simulated_s'))} s / "
                                      f"{formats.number(summary.get('measured_s'))} s (warm-up "
                                      f"{formats.number(warmup_s(run))} s left out)"),
             ("service times", str(service.get("kind", "–"))
              + (f" ({service['path']})" if service.get("path") else ""))]
    items += calibration_rows(service)
    hardware = scenario.get("hardware") or {}
    if hardware:
        items.append(("hardware price", f"{hardware.get('name')}: {formats.usd(hardware.get('usd_per_hour'), 'h')} "
                                        "per replica, as the scenario states it"))  # fmt: skip
    if summary.get("engine"):
        items.append(("data plane", str(summary["engine"])))
    return items


REPORT = KindReport("capsim simulate run", headline, sections, metrics, overlays, provenance)

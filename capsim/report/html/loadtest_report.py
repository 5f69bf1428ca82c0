"""The report of a `capsim loadtest` run folder: what was tested (target, server settings,
hardware), whether the load generator kept its schedule (achieved against intended rate, send lag,
validity), and the latency of each load point corrected for coordinated omission (from the intended
send) beside the uncorrected figure (from the actual send), as docs/loadtest.md defines them.

The latency tails come from `requests.parquet` (every request of the measured interval); the
figures in the tables are the summary's (merged HDR histograms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.report.html import blocks, formats
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder


def steps(run: RunFolder) -> list[dict[str, Any]]:
    """Each load point's summary: a sweep's `steps`, else the summary itself."""
    summary = run.json("summary.json")
    listed = summary.get("steps")
    return [dict(s) for s in listed] if isinstance(listed, list) and listed else [summary]


def _rate_label(step: dict[str, Any]) -> str:
    rate = step.get("rate_rps") or step.get("offered_rps")
    return f"{formats.number(rate)} req/s" if formats.is_number(rate) else f"step {step.get('step', 0)}"


def _step_text(step: dict[str, Any]) -> str:
    latency, plain = step.get("latency_ms") or {}, step.get("latency_uncorrected_ms") or {}
    valid = "valid" if step.get("valid", True) else "INVALID: " + "; ".join(step.get("invalid_reasons") or [])
    return (f"At {formats.rate(step.get('offered_rps'))} intended, the generator sent "
            f"{formats.rate(step.get('achieved_rps'))} and the server completed "
            f"{formats.rate(step.get('throughput_rps'))}; latency p50 {formats.ms(latency.get('p50'))}, "
            f"p99 {formats.ms(latency.get('p99'))} from the intended send "
            f"(p99 {formats.ms(plain.get('p99'))} from the actual send). The run is {valid}.")  # fmt: skip


def headline(run: RunFolder) -> Headline:
    """The target and model, the load points, the p99 of the summary step."""
    summary = run.json("summary.json")
    target = (run.about.get("target") or {})
    points = steps(run)
    model = target.get("model") or summary.get("model") or "the model"
    if len(points) == 1:
        title = f"{model}: p99 {formats.ms((summary.get('latency_ms') or {}).get('p99'))} at {_rate_label(summary)}"
    else:
        rates = [float(p["rate_rps"]) for p in points if formats.is_number(p.get("rate_rps"))]
        title = f"{model}: {len(points)} load points, {formats.number(min(rates))}–{formats.number(max(rates))} req/s" \
            if rates else f"{model}: {len(points)} load points"
    return Headline(title, "How fast does the server answer at each offered rate, measured open-loop?")


def _steps_table(points: list[dict[str, Any]]) -> str:
    columns = [blocks.Column("load point"), blocks.Column("intended", True), blocks.Column("achieved", True),
               blocks.Column("completed", True), blocks.Column("p50", True), blocks.Column("p90", True),
               blocks.Column("p99", True), blocks.Column("p99.9", True), blocks.Column("p99 uncorrected", True),
               blocks.Column("send lag p99", True), blocks.Column("rejected / timed out / errors", True),
               blocks.Column("valid")]  # fmt: skip
    rows, classes = [], []
    for step in points:
        latency, plain = step.get("latency_ms") or {}, step.get("latency_uncorrected_ms") or {}
        counts = step.get("requests") or {}
        rows.append([_rate_label(step), formats.rate(step.get("offered_rps")), formats.rate(step.get("achieved_rps")),
                     formats.rate(step.get("throughput_rps")), formats.ms(latency.get("p50")),
                     formats.ms(latency.get("p90")), formats.ms(latency.get("p99")), formats.ms(latency.get("p999")),
                     formats.ms(plain.get("p99")), formats.ms((step.get("send_lag_ms") or {}).get("p99")),
                     f"{counts.get('rejected', 0)} / {counts.get('timed_out', 0)} / {counts.get('errors', 0)}",
                     "yes" if step.get("valid", True) else "NO"])  # fmt: skip
        classes.append("" if step.get("valid", True) else "fail")
    return blocks.table(columns, rows, classes)


def _measured(run: RunFolder) -> Any:
    """The inference requests of each step's measured interval (after its warm-up), with `step`."""
    frame = run.parquet("requests.parquet")
    if frame is None or frame.empty:
        return None
    summary = run.json("summary.json")
    warm = float(summary.get("warmup_s") or 0.0)
    if "kind" in frame:
        frame = frame[frame["kind"] == "inference"]
    if "step" not in frame:
        frame = frame.assign(step=0)
    starts = {int(p.get("step", 0)): float(p.get("start_s") or 0.0) for p in steps(run)}
    begin = frame["step"].map(lambda s: starts.get(int(s), 0.0) + warm)
    return frame[frame["intended_s"] >= begin]


def _tails_figure(run: RunFolder, measured: Any) -> Any:
    """Each load point's latency tail from the intended send (solid) and from the actual send (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from capsim.report.axes import ccdf, latency_x_axis, tail_axes

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colors: Any = plt.get_cmap("tab10")
    done = measured[(measured["status"] // 100) == 2]
    every = []
    for i, step in enumerate(steps(run)):
        rows = done[done["step"] == step.get("step", 0)]
        corrected = rows["latency_corrected_ms"].to_numpy(dtype=float)
        plain = rows["latency_ms"].to_numpy(dtype=float)
        if corrected.size < 2:
            continue
        every.append(corrected)
        ax.step(*ccdf(corrected), where="post", color=colors(i % 10), lw=1.6, label=f"{_rate_label(step)}")
        ax.step(*ccdf(plain), where="post", color=colors(i % 10), lw=1.0, ls="--")
    shown = np.concatenate(every) if every else np.empty(0)
    latency_x_axis(ax, shown)
    tail_axes(ax, 1.0 / max(max((v.size for v in every), default=1), 1))
    ax.plot([], [], color="grey", lw=1.6, label="from the intended send (corrected)")
    ax.plot([], [], color="grey", lw=1.0, ls="--", label="from the actual send (uncorrected)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Measured latency tail per load point")
    return fig


def _rate_figure(run: RunFolder, measured: Any) -> Any:
    """Sends per second over the run: intended (the schedule) against actual, each load point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    t0 = float(measured["intended_s"].min())
    end = float(max(measured["intended_s"].max(), measured["sent_s"].max())) - t0
    edges = np.arange(0.0, end + 1.0, 1.0)
    intended, _ = np.histogram(measured["intended_s"].to_numpy(dtype=float) - t0, edges)
    sent, _ = np.histogram(measured["sent_s"].to_numpy(dtype=float) - t0, edges)
    ax.step(edges[:-1], intended, where="post", lw=1.6, label="intended (schedule)")
    ax.step(edges[:-1], sent, where="post", lw=1.0, label="actually sent")
    ax.set_xlabel("time since the first measured send (s)")
    ax.set_ylabel("requests per second")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("Achieved against intended rate (measured intervals)")
    return fig


def loadtest_sections(run: RunFolder) -> list[Section]:
    """Load points, charts and warnings of a load test (also the measured half of a validation)."""
    points = steps(run)
    out = [Section("Load points", _steps_table(points) + blocks.paragraph(
        "Latency counts from the intended send (coordinated-omission corrected) unless marked uncorrected; "
        "percentiles over completed requests in each step's measured interval."))]
    measured = _measured(run)
    if measured is not None and not measured.empty:
        out.append(Section("Latency and rate", blocks.figure(_tails_figure(run, measured),
                   "Share of requests slower than each latency: solid from the intended send (what a user "
                   "waited), dashed from the actual send (what hides a late generator).")
                   + blocks.figure(_rate_figure(run, measured), "Requests per second the schedule meant to send "
                                   "and the generator sent, per one-second bin (warm-ups and the pauses "
                                   "between load points left out).")))  # fmt: skip
    notes = [f"{_rate_label(p)}: {reason}" for p in points for reason in p.get("invalid_reasons") or []]
    notes += [f"{_rate_label(p)}: {w}" for p in points for w in p.get("warnings") or []]
    remedy = run.json("summary.json").get("remedy")
    if remedy:
        notes.append(f"for a valid run: {remedy}")
    if notes:
        out.append(Section("Validity", blocks.notes(notes, "warn")))
    return out


def sections(run: RunFolder) -> list[Section]:
    """The body of a load-test report: the summary step's answer, then the load points."""
    summary = run.json("summary.json")
    return [Section("Answer", blocks.answer(_step_text(summary), bool(summary.get("valid", True)))),
            *loadtest_sections(run)]


def metrics(run: RunFolder) -> list[Metric]:
    """The summary step's figures (the last unsaturated step of a sweep, as the load tester chose)."""
    s = run.json("summary.json")
    latency, plain = s.get("latency_ms") or {}, s.get("latency_uncorrected_ms") or {}
    return [Metric("intended rate", s.get("offered_rps"), formats.rate),
            Metric("achieved rate", s.get("achieved_rps"), formats.rate),
            Metric("throughput", s.get("throughput_rps"), formats.rate),
            Metric("latency p50", latency.get("p50"), formats.ms, True),
            Metric("latency p99", latency.get("p99"), formats.ms, True),
            Metric("latency p99.9", latency.get("p999"), formats.ms, True),
            Metric("latency p99 (uncorrected)", plain.get("p99"), formats.ms, True),
            Metric("send lag p99", (s.get("send_lag_ms") or {}).get("p99"), formats.ms, True)]  # fmt: skip


def provenance(run: RunFolder) -> list[tuple[str, str]]:
    """Target, server configuration, the server's and the generator's hardware, the schedule."""
    target = run.about.get("target") or {}
    settings = run.about.get("settings") or {}
    server = target.get("server_config") or {}
    config = server.get("config") or {}
    items = [("target", f"{target.get('url', '–')} ({target.get('protocol', '–')}), "
                        f"model {target.get('model', '–')}")]
    if config:
        items.append(("server batching", f"max batch {config.get('max_batch_size')}, window "
                                         f"{config.get('max_wait_ms')} ms, {config.get('instances')} instance(s), "
                                         f"queue {config.get('queue_capacity')}, "
                                         f"timeout {config.get('timeout_ms')} ms"))
    hardware = server.get("hardware") or {}
    if hardware:
        items.append(("server hardware", f"{hardware.get('name') or hardware.get('device_name')} "
                                         f"({hardware.get('device', '–')}, {hardware.get('dtype', '–')})"))  # fmt: skip
    generator = run.about.get("hardware") or {}
    items.append(("generator machine", f"{generator.get('cpu_model', '–')}, {generator.get('cpu_count', '–')} CPUs"))
    arrival = settings.get("arrival") or {}
    items.append(("schedule", f"{arrival.get('kind', '–')} arrivals, seed {settings.get('seed')}, "
                              f"{settings.get('duration_s')} s per step ({settings.get('warmup_s')} s warm-up), "
                              f"{settings.get('workers')} worker process(es)"))  # fmt: skip
    return items


def overlays(runs: list[RunFolder]) -> list[str]:
    """The summary step's latency tail (from the intended send) of each run on one chart."""
    from capsim.report.plots import latency_ccdf_figure

    tails = {}
    for run in runs:
        measured = _measured(run)
        if measured is None:
            return []
        step = run.json("summary.json").get("summary_step", run.json("summary.json").get("step", 0))
        done = measured[(measured["step"] == step) & ((measured["status"] // 100) == 2)]
        tails[run.name] = done["latency_corrected_ms"].to_numpy(dtype=float)
    return [blocks.figure(latency_ccdf_figure(tails, None, "Measured latency tails (summary step of each run)"),
                          "Share of requests slower than each latency, from the intended send, in each run's "
                          "summary step (the last unsaturated load point of a sweep).")]


REPORT = KindReport("capsim load test", headline, sections, metrics, overlays, provenance)

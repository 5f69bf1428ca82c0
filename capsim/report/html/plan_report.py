"""The report of a `capsim plan --out` folder (plan.json, docs/plan.md): the recommendation in one
paragraph; the alternatives the search evaluated (hardware, fleet, autoscaler, window, $/month,
p50 and the SLO's percentile with its 95% interval, SLO attainment, headroom, status and why); cost
against tail latency with the SLO and the pick marked and the Pareto frontier drawn; the pick's day
(latency and replicas over the hours of the day, cold starts visible; its latency tail) from its
run folder `pick/`; the traps the planner found; and the assumptions: the safety rules, the space
searched, the service-time profiles (measured or extrapolated, calibration error), catalogue prices
with their sources and dates, seed, versions and the command that reproduces the plan."""

from __future__ import annotations

from typing import Any

from capsim.report.html import blocks, formats, simulate_report
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder

PLAN_FORMAT = "capsim-plan/1"
_STATUS_CLASS = {"meets": "", "fails": "fail", "unstable": "fail", "undecided": "fail", "pruned": "fail"}


def plan_document(run: RunFolder) -> dict[str, Any]:
    """plan.json, checked for the format and the keys the report reads."""
    from capsim.errors import CapsimInputError

    doc = run.json("plan.json")
    if not isinstance(doc, dict) or doc.get("format") != PLAN_FORMAT or not isinstance(doc.get("levels"), list):
        raise CapsimInputError(f"plan.json is not a capsim plan (expected format {PLAN_FORMAT} with levels)",
                               source=str(run.path))  # fmt: skip
    return doc


def _is_job(doc: dict[str, Any]) -> bool:
    return doc.get("kind") == "batch"


def _level_name(level: dict[str, Any]) -> str:
    from capsim.sweep import values_text

    return values_text(level.get("load") or {})


def _tail_name(doc: dict[str, Any]) -> str:
    from capsim.report.axes import percentile_name

    percentile = (doc.get("slo") or {}).get("percentile")
    return percentile_name(float(percentile)) if isinstance(percentile, int | float) else "tail"


def _tail_text(row: dict[str, Any]) -> str:
    if not formats.is_number(row.get("tail_ms")):
        return formats.MISSING
    half = row.get("tail_ci95_ms")
    # the interval to the tail's own hundredths of a ms: "10.87 ms ± 0.16", "12.30 ms ± 0.00"
    return f"{row['tail_ms']:.2f} ms" + (f" ± {half:.2f}" if formats.is_number(half) else "")


def _slo_text(doc: dict[str, Any]) -> str:
    slo = doc.get("slo") or {}
    if _is_job(doc):
        return f"deadline {formats.number((slo.get('deadline_s') or 0.0) / 3600.0, 3)} h"
    bounds = [(f"{label}{_tail_name(doc)}", slo.get(key)) for label, key in
              (("", "latency_ms"), ("TTFT ", "ttft_ms"), ("TPOT ", "tpot_ms")) if slo.get(key) is not None]  # fmt: skip
    return ", ".join(f"{name} ≤ {formats.ms(bound)}" for name, bound in bounds)


def _pick_sentence(doc: dict[str, Any], level: dict[str, Any]) -> str:
    from capsim.report.plan_table import fleet_text

    pick = level["pick"]
    at = f" at {_level_name(level)}" if level.get("load") else ""
    rules = doc.get("rules") or {}
    simulated = sum(1 for row in level["candidates"] if row.get("status") != "pruned")
    if _is_job(doc):
        return (f"Run{at} {fleet_text(pick)}: the job finishes in {formats.number(pick['makespan_s'] / 3600.0, 3)} h "
                f"({_slo_text(doc)}) for {formats.usd(pick.get('usd'))} a run — the cheapest of {simulated} "
                f"configurations simulated.")  # fmt: skip
    headroom = pick.get("headroom")
    window = "" if pick.get("max_wait_ms") is None else \
        f" with a {formats.number(pick.get('max_wait_ms'))} ms batching window"
    if doc.get("kind") == "llm":  # the objective that decided, then both token times and $/1M output tokens
        window = (f" (TTFT {formats.ms(pick.get('ttft_ms'))}, TPOT {formats.ms(pick.get('tpot_ms'))}, "
                  f"{formats.usd(pick.get('usd_per_million_output_tokens'))} per million output tokens)")
    return (f"Run{at} {fleet_text(pick)}{window}: "
            f"{formats.usd(pick.get('cost_usd_per_month'))} a month ({formats.usd(pick.get('cost_usd_per_h'), 'h')}, "
            f"{formats.usd(pick.get('usd_per_million_requests'))} per million requests) for "
            f"{formats.rate(level.get('offered_rps'))} offered (peak {formats.rate(level.get('peak_offered_rps'))}). "
            f"Its {_tail_name(doc)} is {_tail_text(pick)} (95% interval) against the SLO {_slo_text(doc)}, "
            f"{formats.percent(pick.get('slo_attainment'), 5)} of requests within it; the peak load uses "
            f"{formats.percent(pick.get('rho_peak'))} of its capacity (headroom {formats.percent(headroom)}; the rule "
            f"allows at most {formats.percent(rules.get('max_utilization'))}). It is the cheapest of {simulated} "
            f"configurations simulated that meets the SLO with 95% confidence and at least "
            f"{(rules.get('redundancy') or {}).get('min_replicas', '–')} replicas.")  # fmt: skip


def _no_pick_sentence(doc: dict[str, Any], level: dict[str, Any]) -> str:
    from capsim.report.plan_table import fleet_text

    at = f" at {_level_name(level)}" if level.get("load") else ""
    closest = "; ".join(f"{fleet_text(row)}" + ("" if row.get("max_wait_ms") is None else
                        f", window {formats.number(row.get('max_wait_ms'))} ms") + f": {row.get('reason')}"
                        for row in level.get("closest") or [])  # fmt: skip
    return f"No configuration{at} meets the SLO ({_slo_text(doc)}) under the safety rules. Closest: {closest or '–'}."


def headline(run: RunFolder) -> Headline:
    """The first level's pick (or that none meets the SLO) as the title; the planning question."""
    from capsim.report.plan_table import fleet_text

    doc = plan_document(run)
    name = (doc.get("scenario") or {}).get("name") or run.name
    level = doc["levels"][0] if doc["levels"] else {"pick": None}
    pick = level.get("pick")
    if pick is None:
        title = f"{name}: no configuration meets {_slo_text(doc)}"
    elif _is_job(doc):
        title = f"{name}: {fleet_text(pick)}, {formats.usd(pick.get('usd'))} a run"
    else:
        title = f"{name}: {fleet_text(pick)}, {formats.usd(pick.get('cost_usd_per_month'))}/month"
    hardware = ", ".join((doc.get("space") or {}).get("hardware") or []) or "the scenario's hardware"
    return Headline(title, f"What is the cheapest configuration on {hardware} that meets {_slo_text(doc)}, with "
                           "headroom, confidence and redundancy?")  # fmt: skip


def _alternatives_table(doc: dict[str, Any], level: dict[str, Any]) -> str:
    job = _is_job(doc)
    llm = doc.get("kind") == "llm"  # TTFT and TPOT at the SLO percentile and $/1M output tokens instead
    tail = _tail_name(doc)
    columns = [blocks.Column("hardware"), blocks.Column("fleet", True), blocks.Column("autoscaler"),
               blocks.Column("$/1M out tok" if llm else "window", True),
               blocks.Column("$/job" if job else "$/month", True),
               blocks.Column("makespan" if job else f"TTFT {tail}" if llm else "p50", True),
               blocks.Column("workers" if job else f"TPOT {tail}" if llm else f"{tail} ± 95%", True),
               blocks.Column("SLO attainment", True), blocks.Column("headroom", True), blocks.Column("status"),
               blocks.Column("why", note=True)]  # fmt: skip
    pick = level.get("pick")  # one of the candidates, repeated whole (a batch job's rows have no key)
    cost_key = "usd" if job else "cost_usd_per_month"
    rows, classes = [], []
    for row in sorted(level["candidates"], key=lambda r: (r.get(cost_key) or 0.0, r.get("tail_ms") or 0.0)):
        scaler = row.get("autoscaler") or {}
        autoscaler = f"{scaler.get('kind')} on {scaler.get('metric')}" if scaler else "fixed"
        fleet = f"{row.get('min_replicas')}–{row.get('max_replicas')}" if row.get("fleet") == "autoscaled" \
            else formats.number(row.get("replicas"))
        cost = formats.usd(row.get(cost_key))
        if row.get("status") == "pruned":
            cost = f"≥ {cost}"  # a lower bound, never simulated
        if llm:
            middle = [formats.usd(row.get("usd_per_million_output_tokens")), cost, formats.ms(row.get("ttft_ms")),
                      formats.ms(row.get("tpot_ms"))]  # fmt: skip
        else:
            middle = [formats.ms(row.get("max_wait_ms")), cost,
                      formats.number((row.get("makespan_s") or 0.0) / 3600.0, 3) + " h" if job else
                      formats.ms(row.get("p50_ms")),
                      formats.number(row.get("replicas")) if job else _tail_text(row)]  # fmt: skip
        rows.append([str(row.get("hardware")), fleet, autoscaler, *middle,
                     formats.percent(row.get("slo_attainment"), 5), formats.percent(row.get("headroom")),
                     "★ pick" if row == pick else str(row.get("status")),
                     str(row.get("reason", ""))])  # fmt: skip
        classes.append("pick" if row == pick else _STATUS_CLASS.get(str(row.get("status")), ""))
    return blocks.table(columns, rows, classes)


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both cost and latency (lower is better in each), by cost."""
    front: list[tuple[float, float]] = []
    for cost, latency in sorted(points):
        if not front or latency < front[-1][1]:
            front.append((cost, latency))
    return front


def pareto_figure(doc: dict[str, Any], level: dict[str, Any]) -> Any:
    """Each simulated candidate at ($/month, tail latency with its 95% interval), one colour per
    hardware; filled where it meets the SLO, hollow where not, × unstable; the Pareto frontier; the
    SLO as a labelled line; the pick as a ★."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.lines import Line2D

    from capsim.report.axes import latency_axis, slo_label

    fig, ax = plt.subplots(figsize=(8, 4.8))
    colors: Any = plt.get_cmap("tab10")
    hardware = list(dict.fromkeys(str(row.get("hardware")) for row in level["candidates"]))
    simulated = [r for r in level["candidates"] if formats.is_number(r.get("tail_ms"))
                 and formats.is_number(r.get("cost_usd_per_month"))]  # fmt: skip
    for row in simulated:
        color = colors(hardware.index(str(row.get("hardware"))) % 10)
        x, y = row["cost_usd_per_month"], row["tail_ms"]
        half = row.get("tail_ci95_ms") if formats.is_number(row.get("tail_ci95_ms")) else 0.0
        if half:
            ax.errorbar(x, y, yerr=half, color=color, lw=0.8, capsize=2, zorder=2)
        if row.get("status") == "unstable":
            ax.scatter(x, y, marker="x", color=color, s=36, zorder=3)
        else:
            ax.scatter(x, y, marker="o", s=32, zorder=3, edgecolors=color,
                       facecolors=color if row.get("status") == "meets" else "none")  # fmt: skip
    front = pareto_front([(r["cost_usd_per_month"], r["tail_ms"]) for r in simulated if r.get("status") != "unstable"])
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="grey", lw=1.0, ls="-",
                alpha=0.7, label="Pareto frontier (nothing cheaper is faster)")  # fmt: skip
    slo = {**(doc.get("slo") or {})}
    label = slo_label(slo)
    if label is not None:
        ax.axhline(slo["latency_ms"], color="crimson", ls="--", lw=1.2, label=label)
    pick = level.get("pick")
    if pick is not None and formats.is_number(pick.get("tail_ms")):
        ax.scatter(pick["cost_usd_per_month"], pick["tail_ms"], marker="*", s=320, color="gold",
                   edgecolors="black", linewidths=0.7, zorder=4,
                   label=f"pick: {formats.usd(pick['cost_usd_per_month'])}/month")  # fmt: skip
    handles, labels = ax.get_legend_handles_labels()
    for i, name in enumerate(hardware):
        handles.append(Line2D([], [], ls="", marker="o", color=colors(i % 10), label=name))
        labels.append(name)
    for marker, face, text in (("o", "grey", "meets the SLO"), ("o", "none", "misses it or undecided"),
                               ("x", "grey", "unstable")):  # fmt: skip
        handles.append(Line2D([], [], ls="", marker=marker, color="grey", markerfacecolor=face, label=text))
        labels.append(text)
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    shown = np.array([r["tail_ms"] for r in simulated] + ([slo["latency_ms"]] if label else []), dtype=float)
    latency_axis(ax, shown, "y", f"{_tail_name(doc)} latency")
    ax.set_xlabel("cost, USD per month")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"${v:,.0f}"))
    ax.grid(alpha=0.3)
    at = f" at {_level_name(level)}" if level.get("load") else ""
    ax.set_title(f"Cost against {_tail_name(doc)} latency of every configuration simulated{at}", fontsize=10)
    return fig


def pick_folder(run: RunFolder, index: int) -> RunFolder | None:
    """The pick of traffic level `index`, simulated again and written as a simulate run folder."""
    names = plan_document(run).get("pick_folders") or []
    name = names[index] if index < len(names) else None
    if not name or not (run.path / str(name) / "summary.json").is_file():
        return None
    return RunFolder(run.path / str(name), "simulate", run.about)


def _pick_day(run: RunFolder, index: int) -> list[str]:
    """The pick's latency and replicas over time, and its latency tail (from its run folder)."""
    pick = pick_folder(run, index)
    if pick is None:
        return []
    shown = ("Over time", "Latency tail", "Latency", "Progress")
    return [section.body for section in simulate_report.sections(pick) if section.title in shown]


def _level_sections(doc: dict[str, Any], run: RunFolder, index: int, level: dict[str, Any]) -> list[Section]:
    at = f" at {_level_name(level)}" if level.get("load") else ""
    out = [Section(f"Alternatives{at}", _alternatives_table(doc, level) + blocks.paragraph(
        "Cheapest first. Status: meets (the whole 95% interval of the tail within the SLO, headroom and redundancy "
        "hold), fails, unstable (offered load at or above capacity), undecided (the interval still straddles the "
        "SLO after the most replications), pruned (not simulated: its cost alone exceeds the pick's)."))]
    if not _is_job(doc) and any(formats.is_number(r.get("tail_ms")) for r in level["candidates"]):
        out.append(Section(f"Cost against latency{at}", blocks.figure(
            pareto_figure(doc, level), "Each configuration simulated at its monthly cost and tail latency (error bars: "
            "95% interval across replications). The pick is the cheapest filled point below the SLO line; "
            "configurations on the frontier are the only ones worth paying for.")))
    day = _pick_day(run, index)
    if day:
        out.append(Section(f"The pick over time{at}", "\n".join(day)))
    return out


def _assumptions(doc: dict[str, Any], run: RunFolder) -> list[tuple[str, str]]:
    rules, space = doc.get("rules") or {}, doc.get("space") or {}
    confidence, redundancy = rules.get("confidence") or {}, rules.get("redundancy") or {}
    items = [
        ("headroom rule", f"peak offered load ≤ {formats.percent(rules.get('max_utilization'))} of capacity"),
        ("confidence rule", f"{formats.percent(confidence.get('level'))} interval of the tail clear of the SLO; "
                            f"{confidence.get('initial_replications')} replications, doubled up to "
                            f"{confidence.get('max_replications')}"),
        ("redundancy rule", f"at least {redundancy.get('min_replicas')} replicas"
                            + (", N+1" if redundancy.get("n_plus_one") else "")),
        ("month", f"{formats.number(rules.get('hours_per_month'))} h"),
        ("space searched", f"{', '.join(space.get('hardware') or [])}; {space.get('fleet')} fleet, "
                           f"{space.get('searched')} {(space.get('replicas') or {}).get('low')}–"
                           f"{(space.get('replicas') or {}).get('high')}; windows "
                           f"{', '.join(formats.number(w) + ' ms' for w in space.get('max_wait_ms') or [])}"),
        ("search effort", f"{formats.number(doc.get('simulations'))} replications simulated "
                          f"({formats.number(doc.get('requests_simulated'))} requests), "
                          f"{formats.number(doc.get('cached_simulations'))} read from the cache; an exhaustive grid "
                          f"has {formats.number(space.get('size'))} configurations"),
    ]  # fmt: skip
    for vary in space.get("vary") or []:
        items.append(("varied", f"{vary.get('path')} = {', '.join(str(v) for v in vary.get('values') or [])}"))
    provenance = doc.get("provenance") or {}
    for service in provenance.get("service") or []:
        origin = "measured profile" if service.get("measured") else "parametric model (not measured)"
        if service.get("extrapolated"):
            origin += ", EXTRAPOLATED beyond the measured batch sizes"
        sizes = service.get("measured_batch_sizes")
        detail = f" (batch sizes {', '.join(str(s) for s in sizes)})" if sizes else ""
        items.append((f"service time on {service.get('hardware')}",
                      f"{service.get('kind')}: {origin}{detail}; source {service.get('source') or '–'}"))
    for price in provenance.get("hardware") or []:
        dated = f"dated {price['date']}" if price.get("date") else "undated"
        items.append((f"price of {price.get('name')}",
                      f"{formats.usd(price.get('usd_per_hour'), 'h')} per replica; "
                      f"source {price.get('source') or '–'}; {dated}; confidence {price.get('confidence') or '–'}"))
    pick = pick_folder(run, 0)
    if pick is not None:
        from capsim.report.tables import calibration_rows

        items += calibration_rows(pick.json("summary.json").get("service") or {})
    items += [("seed", str(doc.get("seed"))), ("capsim", f"{doc.get('capsim_version')} (plan of "
                                                         f"{doc.get('created_utc')})")]
    return items


def sections(run: RunFolder) -> list[Section]:
    """Recommendation, per level alternatives/chart/day, traps, assumptions."""
    doc = plan_document(run)
    sentences, met = [], True
    for level in doc["levels"]:
        if level.get("pick") is None:
            sentences.append(_no_pick_sentence(doc, level))
            met = False
        else:
            sentences.append(_pick_sentence(doc, level))
    out = [Section("Recommendation", "".join(blocks.answer(text, met) for text in sentences))]
    for index, level in enumerate(doc["levels"]):
        out += _level_sections(doc, run, index, level)
    traps = [f"{trap.get('kind')}: {trap.get('message')}" for trap in doc.get("traps") or []]
    out.append(Section("Traps found", blocks.notes(traps, "warn") if traps else blocks.paragraph(
        "None of the traps the planner checks for (an HPA on utilization with dynamic batching, a varied field "
        "that changes nothing, extrapolated service times) was found.")))
    out.append(Section("Assumptions", blocks.facts(_assumptions(doc, run))))
    return out


def metrics(run: RunFolder) -> list[Metric]:
    """The first level's pick, and how much the search simulated."""
    doc = plan_document(run)
    pick = (doc["levels"][0].get("pick") if doc["levels"] else None) or {}
    return [Metric("pick cost per month", pick.get("cost_usd_per_month"), formats.usd, True),
            Metric("pick cost per hour", pick.get("cost_usd_per_h"), lambda v: formats.usd(v, "h"), True),
            Metric(f"pick {_tail_name(doc)}", pick.get("tail_ms"), formats.ms, True),
            Metric("pick SLO attainment", pick.get("slo_attainment"), lambda v: formats.percent(v, 5), False,
                   share=True),
            Metric("pick headroom", pick.get("headroom"), formats.percent, False, share=True),
            Metric("requests simulated", doc.get("requests_simulated"), formats.number, True)]  # fmt: skip


def overlays(runs: list[RunFolder]) -> list[str]:
    """The picks' days overlaid (their run folders, compared as simulate runs, named by their plan)."""
    picks = [pick_folder(run, 0) for run in runs]
    if any(pick is None for pick in picks):
        return []
    return simulate_report.overlays([RunFolder(pick.path, "simulate", pick.about, label=run.name)
                                     for run, pick in zip(runs, picks, strict=True) if pick is not None])


REPORT = KindReport("capsim plan", headline, sections, metrics, overlays)

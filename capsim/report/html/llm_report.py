"""The report of an LLM `capsim simulate --out` folder (serving.mode llm: the summary has `ttft_ms`):
the answer against the TTFT and TPOT targets, the summary table, the tails of time to first token
(with its SLO) and of end-to-end latency, the fleet and queues over time, and the cost per million
output tokens. The shared parts (summary table, charts over time, cost, provenance) are the
simulate report's."""

from __future__ import annotations

from typing import Any

import numpy as np

from capsim.report.html import blocks, formats, simulate_report
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder


def _key(summary: dict[str, Any]) -> str:
    from capsim.sweep import tail_key

    return tail_key((summary.get("slo") or {}).get("percentile"))


def _targets(summary: dict[str, Any]) -> str:
    """`TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99` from the summary's slo block ('no SLO' when none)."""
    from capsim.report.axes import percentile_name

    slo = summary.get("slo") or {}
    parts = [f"{name} ≤ {formats.ms(slo[key])}" for key, name in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"),
                                                                  ("latency_ms", "latency")) if slo.get(key)]
    if not parts:
        return "no SLO"
    at = f" at {percentile_name(float(slo['percentile']))}" if formats.is_number(slo.get("percentile")) else ""
    return ", ".join(parts) + at


def headline(run: RunFolder) -> Headline:
    """`llm-check: TTFT p99 56.2 ms, TPOT p99 0.6 ms, SLO met, $12.29/h`."""
    summary, scenario = run.json("summary.json"), simulate_report.scenario_of(run)
    key, slo = _key(summary), summary.get("slo") or {}
    verdict = f", SLO {'met' if slo.get('met') else 'MISSED'}" if _targets(summary) != "no SLO" else ""
    return Headline(f"{summary['scenario']}: TTFT {key} {formats.ms(summary['ttft_ms'].get(key))}, TPOT {key} "
                    f"{formats.ms((summary.get('tpot_ms') or {}).get(key))}{verdict}, "
                    f"{formats.usd(summary['cost'].get('usd_per_hour'), 'h')}",
                    scenario.get("description") or "Does this LLM fleet meet its TTFT and TPOT targets, and at what "
                                                   "cost per token?")  # fmt: skip


def answer_text(run: RunFolder) -> tuple[str, bool]:
    """The run's answer in one paragraph, and whether its SLO was met."""
    summary, scenario = run.json("summary.json"), simulate_report.scenario_of(run)
    key, slo, cost = _key(summary), summary.get("slo") or {}, summary.get("cost") or {}
    tokens = summary.get("tokens") or {}
    met = bool(slo.get("met")) if _targets(summary) != "no SLO" else True
    verdict = f"{'meet' if met else 'MISS'} the SLO ({_targets(summary)}, attainment " \
              f"{formats.percent(slo.get('attainment'), 5)})" if _targets(summary) != "no SLO" else "have no SLO"
    per_h = cost.get("usd_per_hour")
    return (f"{simulate_report.fleet_text(summary, scenario)} serve {formats.rate(summary.get('throughput_rps'))} "
            f"({formats.number(tokens.get('output_per_s'))} output tokens/s) and {verdict}: TTFT {key} "
            f"{formats.ms(summary['ttft_ms'].get(key))}, TPOT {key} "
            f"{formats.ms((summary.get('tpot_ms') or {}).get(key))}, end-to-end {key} "
            f"{formats.ms(summary['latency_ms'].get(key))}. It costs {formats.usd(per_h, 'h')}, "
            f"{formats.usd(simulate_report.per_month(per_h))} a month at 730 h, "
            f"{formats.usd(cost.get('usd_per_million_output_tokens'))} per million output tokens.", met)  # fmt: skip


def first_token_ms(run: RunFolder) -> np.ndarray | None:
    """Time to first token (ms) of the completed requests after the warm-up (first replication)."""
    requests = run.parquet("requests.parquet")
    if requests is None or requests.empty or "first_token_s" not in requests:
        return None
    first = requests[(requests["replication"] == requests["replication"].min()) & (requests["outcome"] == "completed")
                     & (requests["arrival_s"] >= simulate_report.warmup_s(run))]  # fmt: skip
    return ((first["first_token_s"] - first["arrival_s"]) * 1000.0).to_numpy(dtype=float)


def _tails_section(run: RunFolder) -> Section | None:
    from capsim.report.plots import latency_ccdf_figure

    summary = run.json("summary.json")
    ttft, latency = first_token_ms(run), simulate_report.latencies_ms(run)
    if ttft is None or latency is None:
        return None
    slo = summary.get("slo") or {}
    ttft_slo = {"latency_ms": slo.get("ttft_ms"), "percentile": slo.get("percentile")} if slo.get("ttft_ms") else None
    return Section("Latency tails", blocks.figure(
        latency_ccdf_figure({run.name: ttft}, ttft_slo, f"{summary['scenario']}: time to first token"),
        "Share of requests whose first token came later than each time (1 − CDF), after the warm-up; the TTFT "
        "target at its percentile marked.") + blocks.figure(
        latency_ccdf_figure({run.name: latency}, None, f"{summary['scenario']}: end-to-end latency"),
        "Share of requests slower than each end-to-end latency (arrival to last token)."))


def sections(run: RunFolder) -> list[Section]:
    """Answer, summary, tails, over time, cost."""
    summary = run.json("summary.json")
    text, met = answer_text(run)
    out = [Section("Answer", blocks.answer(text, met) + blocks.notes([str(w) for w in summary.get("warnings") or []],
                                                                     "warn")),
           Section("Summary", simulate_report.summary_html(summary))]  # fmt: skip
    out += [s for s in (_tails_section(run), simulate_report.time_section(run)) if s is not None]
    return [*out, simulate_report.cost_section(run)]


def metrics(run: RunFolder) -> list[Metric]:
    """TTFT, TPOT, end-to-end tail, tokens per second, cost per hour and per million output tokens."""
    s = run.json("summary.json")
    cost, tpot = s.get("cost") or {}, s.get("tpot_ms") or {}
    return [Metric("throughput", s.get("throughput_rps"), formats.rate),
            Metric("output tokens per second", (s.get("tokens") or {}).get("output_per_s"), formats.number, False),
            Metric("TTFT p50", s["ttft_ms"].get("p50"), formats.ms, True),
            Metric("TTFT p99", s["ttft_ms"].get("p99"), formats.ms, True),
            Metric("TPOT p99", tpot.get("p99"), formats.ms, True),
            Metric("latency p99", s["latency_ms"].get("p99"), formats.ms, True),
            Metric("SLO attainment", (s.get("slo") or {}).get("attainment"), lambda v: formats.percent(v, 5), False,
                   share=True),
            Metric("cost per hour", cost.get("usd_per_hour"), lambda v: formats.usd(v, "h"), True),
            Metric("cost per million output tokens", cost.get("usd_per_million_output_tokens"), formats.usd, True)]


def overlays(runs: list[RunFolder]) -> list[str]:
    """The runs' time-to-first-token tails on one chart."""
    from capsim.report.plots import latency_ccdf_figure

    tails = {run.name: values for run in runs if (values := first_token_ms(run)) is not None}
    if len(tails) != len(runs):
        return []
    return [blocks.figure(latency_ccdf_figure(tails, None, "Time to first token"),
                          "Share of requests whose first token came later than each time, each run after its "
                          "warm-up.")]


REPORT = KindReport("capsim simulate run (LLM)", headline, sections, metrics, overlays, simulate_report.provenance)

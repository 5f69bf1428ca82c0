"""The report of a load-test folder that `capsim validate` compared with the simulator
(`validation.json`): how far the simulation is from the measurement — the worst errors against the
calibration study's targets, measured against simulated for each load point with relative errors
(the table `capsim validate` prints), both latency tails (`validation_cdf.png`, when validate ran
with `--plot`) — and then the measured run itself (capsim/report/html/loadtest_report.py)."""

from __future__ import annotations

from typing import Any

from capsim.report.html import blocks, formats, loadtest_report
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import VALIDATION_FILE, RunFolder

CDF_FILE = "validation_cdf.png"  # capsim/calibration/validate.py writes it with --plot


def _document(run: RunFolder) -> dict[str, Any]:
    doc = run.json(VALIDATION_FILE)
    if not isinstance(doc, dict) or not isinstance(doc.get("points"), list) or "errors" not in doc:
        from capsim.errors import CapsimInputError

        raise CapsimInputError(f"{VALIDATION_FILE} lacks its points or errors", source=str(run.path))
    return doc


def headline(run: RunFolder) -> Headline:
    """The worst errors as the title."""
    from capsim.calibration.accuracy import error_line

    doc = _document(run)
    model = ((doc.get("profile") or {}).get("model") or {}).get("name") or "model"
    return Headline(f"{model}: simulated against measured, {error_line(doc['errors'])}",
                    "How far are the simulator's predictions from what the server measured?")


def _verdict(doc: dict[str, Any]) -> tuple[str, bool]:
    from capsim.calibration.accuracy import error_line

    met = doc["errors"].get("targets_met") or {}
    targets = doc["errors"].get("targets") or {}
    parts = [f"{key} within {formats.percent(targets.get(key), 2)}: {'yes' if ok else 'NO'}" for key, ok in met.items()]
    text = f"{error_line(doc['errors'])}. Targets of the calibration study: {'; '.join(parts) or 'none recorded'}."
    return text, all(met.values()) if met else True


def sections(run: RunFolder) -> list[Section]:
    """Verdict, per-point tables, CDF chart, the profile and overhead used, then the measured run."""
    from capsim.report.validation_table import comparison_table

    doc = _document(run)
    text, met = _verdict(doc)
    out = [Section("Answer", blocks.answer(text, met) + blocks.notes([str(w) for w in doc.get("warnings") or []],
                                                                     "warn"))]  # fmt: skip
    tables = "\n".join(blocks.rich_table(comparison_table(row)) for row in doc["points"])
    out.append(Section("Measured against simulated", tables))
    if run.has(CDF_FILE):
        out.append(Section("Latency tails", blocks.png((run.path / CDF_FILE).read_bytes(),
                                                       "Measured (solid) and simulated (dashed) latency tails of "
                                                       "each load point, as capsim validate --plot drew them.")))
    else:
        out.append(Section("Latency tails", blocks.paragraph("capsim validate ran without --plot, so the folder holds "
                                                             "no chart of both tails; rerun it with --plot.")))
    profile = doc.get("profile") or {}
    out.append(Section("Replay", blocks.facts([
        ("profile", f"{profile.get('path')} ({profile.get('source')}, created {profile.get('created_utc')})"),
        ("profile hardware", str((profile.get("hardware") or {}).get("name", "–"))),
        ("overhead", f"{formats.ms(doc.get('overhead_ms'))} ({doc.get('overhead_source')})"),
        ("front end replayed", "yes" if doc.get("frontend") else "no"),
        ("seed / replications", f"{doc.get('seed')} / {doc.get('replications')} (pooled)"),
        ("validated", str(doc.get("created_utc"))),
    ])))  # fmt: skip
    return out + loadtest_report.loadtest_sections(run)


def metrics(run: RunFolder) -> list[Metric]:
    """The worst relative errors (≤ 80% utilization when any point qualifies)."""
    errors = _document(run)["errors"]
    part = errors["utilization_le_80"] if errors["utilization_le_80"].get("points") else errors["all"]
    return [Metric(f"worst |error| {name}", (part.get(key) or {}).get("max_abs"), formats.percent, True, share=True)
            for key, name in (("latency_ms.p50", "p50"), ("latency_ms.p99", "p99"),
                              ("throughput_rps", "throughput"))]  # fmt: skip


REPORT = KindReport("capsim validate", headline, sections, metrics, loadtest_report.overlays,
                    loadtest_report.provenance)

"""`build_report(paths)`: the HTML document for one run folder, or several of the same kind side
by side, and `write_report` to put it in a file atomically.

One folder: the kind's sections (capsim/report/html/kinds.py), then what every folder has —
who wrote it, when, with which capsim, and the command line that reproduces it. Several folders:
a table of each run's headline figures with the change against the first (B − A and relative),
the kind's overlaid charts, each run's answer, and each run's provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from capsim.errors import CapsimInputError
from capsim.report.html import blocks, formats
from capsim.report.html.kinds import KindReport, Metric, kind_report
from capsim.report.html.page import Section, page
from capsim.report.html.run_folders import RunFolder, open_run_folder


def _command_line(run: RunFolder) -> str | None:
    """How to reproduce the folder: the marker's command line, or the load test's argv."""
    if isinstance(run.about.get("command_line"), str):
        return str(run.about["command_line"])
    argv = run.about.get("command")
    if isinstance(argv, list) and argv:
        import shlex

        return shlex.join(["capsim", *[str(a) for a in argv[1:]]])
    return None


def provenance_facts(run: RunFolder, report: KindReport) -> list[tuple[str, str]]:
    """What every folder records about its making, then the kind's own facts."""
    about = run.about
    items = [("folder", str(run.path)), ("kind", run.kind)]
    if run.kind in ("loadtest", "validate"):
        versions = about.get("versions") or {}
        items.append(("measured", f"{about.get('start_utc', '–')} with capsim {versions.get('capsim', '–')}"))
        shown = ", ".join(f"{name} {version}" for name, version in versions.items() if version)
        items.append(("software", shown or "–"))
    else:
        items.append(("written", f"{about.get('written_utc', '–')} by capsim {about.get('capsim_version', '–')} "
                                 f"(capsim {about.get('command')})"))  # fmt: skip
    items += report.provenance(run)
    return items


def _provenance_section(run: RunFolder, report: KindReport, title: str = "Provenance") -> Section:
    command = _command_line(run)
    reproduce = (blocks.paragraph("To reproduce:") + blocks.code(command)) if command else blocks.paragraph(
        "The folder does not record its command line (written by an older capsim or outside the CLI).")
    return Section(title, blocks.facts(provenance_facts(run, report)) + reproduce)


def _footer(runs: Sequence[RunFolder]) -> str:
    from capsim import __version__

    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"capsim {__version__} report of {', '.join(run.name for run in runs)}, generated {now}. "
            "Self-contained: no scripts, fonts or images are fetched.")


def single_report(run: RunFolder) -> str:
    """The document for one run folder."""
    report = kind_report(run.kind)
    head = report.headline(run)
    sections = [*report.sections(run), _provenance_section(run, report)]
    return page(head.title, f"{report.kicker} · {run.name}", head.question, sections, _footer([run]))


def _change(first: Metric, other: Metric) -> tuple[str, str]:
    """(B − A written in the metric's unit, relative change) of two runs' values of one metric."""
    a, b = first.value, other.value
    if not (formats.is_number(a) and formats.is_number(b)):
        return formats.MISSING, formats.MISSING
    assert a is not None and b is not None
    difference = f"{'−' if b < a else '+'}{(formats.points if other.share else other.write)(abs(b - a))}"
    return difference, formats.signed_percent((b - a) / a) if a else formats.MISSING


def comparison_table(runs: Sequence[RunFolder], report: KindReport) -> str:
    """Each metric of each run, and for every run after the first its change against the first."""
    per_run = [{m.name: m for m in report.metrics(run)} for run in runs]
    names = list(per_run[0]) + [n for metrics in per_run[1:] for n in metrics if n not in per_run[0]]
    columns = [blocks.Column("metric"), *[blocks.Column(run.name, True) for run in runs]]
    for run in runs[1:]:
        columns += [blocks.Column(f"{run.name} − {runs[0].name}", True), blocks.Column("change", True)]
    rows = []
    for name in names:
        present = [metrics.get(name) for metrics in per_run]
        writer = next(m for m in present if m is not None).write
        row = [name, *[writer(m.value) if m is not None else formats.MISSING for m in present]]
        for other in present[1:]:
            row += list(_change(present[0], other)) if present[0] and other else [formats.MISSING] * 2
        rows.append(row)
    return blocks.table(columns, rows)


def comparison_report(runs: Sequence[RunFolder]) -> str:
    """The document comparing runs of one kind."""
    kinds = sorted({run.kind for run in runs})
    if kinds == ["loadtest", "validate"]:
        kinds = ["loadtest"]  # a validated folder is a load test too: compared as measurements
    if len(kinds) > 1:
        described = ", ".join(f"{run.path} is {run.kind}" for run in runs)
        raise CapsimInputError(f"can compare runs of one kind only ({described})", field="RUN_DIR")
    report = kind_report(kinds[0])
    names = [run.name for run in runs]
    if len(set(names)) < len(names):
        raise CapsimInputError(f"two folders have the same name ({', '.join(names)}); the comparison labels runs "
                               "by folder name, so rename or copy one", field="RUN_DIR")  # fmt: skip
    title = " vs ".join(names)
    question = f"What changes between these {report.kicker}s, figure by figure?"
    heads = [f"{run.name}: {report.headline(run).title}" for run in runs]
    sections = [Section("Runs", blocks.notes(heads)),
                Section("Side by side", comparison_table(runs, report))]  # fmt: skip
    charts = report.overlays(list(runs))
    if charts:
        sections.append(Section("Overlaid", "\n".join(charts)))
    for run in runs:
        own = report.sections(run)
        sections.append(Section(f"{run.name}: {own[0].title.lower()}", own[0].body))
    sections += [_provenance_section(run, report, f"{run.name}: provenance") for run in runs]
    return page(title, f"comparison of {report.kicker}s", question, sections, _footer(runs))


def build_report(paths: Sequence[Path]) -> str:
    """The HTML of a report on one run folder, or of several compared side by side."""
    runs = [open_run_folder(Path(path)) for path in paths]
    return single_report(runs[0]) if len(runs) == 1 else comparison_report(runs)


def default_report_path(paths: Sequence[Path]) -> Path:
    """`reports/<folder name>.html`, or `reports/<A>-vs-<B>.html` for a comparison."""
    names = [Path(path).resolve().name or "run" for path in paths]
    return Path("reports") / f"{'-vs-'.join(names)}.html"


def write_report(html: str, path: Path) -> None:
    """Write the document atomically (the user's umask applies; capsim/atomic.py)."""
    from capsim.atomic import atomic_write_text

    atomic_write_text(path, html)

"""The registry of report kinds: what each kind of run folder shows, alone and beside another.

A kind is one `KindReport`, registered under the name `run_folders.open_run_folder` gives the folder
(simulate, llm, solve, sweep, plan, loadtest, validate). Adding a kind (as llm_report.py was) is one module that
builds a `KindReport` and one line in `KINDS` below; the page, the provenance and the side-by-side
comparison are shared (capsim/report/html/build.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder


@dataclass(frozen=True)
class Metric:
    """One headline figure of a run, for the side-by-side table: its name, value and how to write it
    (a capsim/report/html/formats.py function); `lower_is_better` says which way a change is good
    (None: neither); `share`: the value is a fraction, so differences are percentage points."""

    name: str
    value: float | None
    write: Callable[[object], str]
    lower_is_better: bool | None = None
    share: bool = False


@dataclass(frozen=True)
class Headline:
    """The report's title and the question the run answers."""

    title: str
    question: str


@dataclass(frozen=True)
class KindReport:
    """What a kind of run folder shows.

    `headline`: the title and question; `sections`: the body of a report on one folder (the
    answer first); `metrics`: the figures the side-by-side table compares; `overlays`: charts with
    several runs of the kind drawn together (labelled by folder name); `provenance`: the kind's own
    facts for the provenance section (seeds, profiles, prices), after those every folder has."""

    kicker: str
    headline: Callable[[RunFolder], Headline]
    sections: Callable[[RunFolder], list[Section]]
    metrics: Callable[[RunFolder], list[Metric]]
    overlays: Callable[[list[RunFolder]], list[str]] = field(default=lambda runs: [])
    provenance: Callable[[RunFolder], list[tuple[str, str]]] = field(default=lambda run: [])


KINDS = {
    "simulate": "simulate_report",
    "llm": "llm_report",
    "solve": "solve_report",
    "sweep": "sweep_report",
    "plan": "plan_report",
    "loadtest": "loadtest_report",
    "validate": "validate_report",
}
"""Kind → the module of capsim/report/html that defines its `REPORT` (imported when a report is built)."""


def kind_report(kind: str) -> KindReport:
    """The registered report of `kind`."""
    import importlib

    report = importlib.import_module(f"capsim.report.html.{KINDS[kind]}").REPORT
    assert isinstance(report, KindReport)
    return report

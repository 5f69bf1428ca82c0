"""The report of a `capsim simulate --solve --out` folder (`solve.json`): the fewest workers, or the
cheapest hardware, that finishes a batch job by its deadline, with the simulations that decided it
and a chart of makespan and cost against the worker count."""

from __future__ import annotations

from typing import Any

from capsim.report.html import blocks, formats
from capsim.report.html.kinds import Headline, KindReport, Metric
from capsim.report.html.page import Section
from capsim.report.html.run_folders import RunFolder


def _solve(run: RunFolder) -> dict[str, Any]:
    data = run.json("solve.json")
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
        from capsim.errors import CapsimInputError

        raise CapsimInputError("solve.json lacks its candidates", source=str(run.path))
    return data


def _answer_text(data: dict[str, Any]) -> str:
    best = data.get("answer")
    deadline_h = formats.number(float(data["deadline_s"]) / 3600.0, 3) if formats.is_number(data.get("deadline_s")) \
        else formats.MISSING
    if not best:
        return f"No candidate finishes {data['scenario']} within {deadline_h} h (up to serving.search.max_workers)."
    return (f"{best['workers']} worker(s) on {best['hardware']} finish {data['scenario']} in "
            f"{formats.number(best['makespan_s'] / 3600.0, 3)} h, within the {deadline_h} h deadline, for "
            f"{formats.usd(best['usd'])}.")  # fmt: skip


def headline(run: RunFolder) -> Headline:
    """The answer as the title."""
    data = _solve(run)
    best = data.get("answer")
    title = (f"{data['scenario']}: {best['workers']} × {best['hardware']}, {formats.usd(best['usd'])} for the job"
             if best else f"{data['scenario']}: no candidate meets the deadline")
    what = "the fewest workers" if data.get("solve") == "workers" else "the cheapest hardware"
    return Headline(title, f"Which is {what} that finishes the batch job by its deadline?")


def _probes_figure(data: dict[str, Any]) -> Any:
    """Makespan (top) and cost (bottom) against workers, one line per hardware, the deadline marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 5.4), sharex=True)
    for answer in data["candidates"]:
        probes = sorted(answer["probes"], key=lambda p: p["workers"])
        workers = [p["workers"] for p in probes]
        top.plot(workers, [p["makespan_s"] / 3600.0 for p in probes], marker="o", label=answer["hardware"])
        bottom.plot(workers, [p["usd"] for p in probes], marker="o", label=answer["hardware"])
    if formats.is_number(data.get("deadline_s")):
        top.axhline(data["deadline_s"] / 3600.0, color="crimson", ls="--", lw=1.2,
                    label=f"deadline {data['deadline_s'] / 3600.0:g} h")  # fmt: skip
    top.set_ylabel("makespan (h)")
    bottom.set_ylabel("cost of the job (USD)")
    bottom.set_xlabel("workers")
    bottom.set_xscale("log", base=2)
    bottom.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _p: f"{v:g}"))
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=8)
    top.set_title(f"{data['scenario']}: the simulations of the search")
    return fig


def sections(run: RunFolder) -> list[Section]:
    """Answer, candidates table, chart."""
    from capsim.report.batchjob_table import solve_table

    data = _solve(run)
    out = [Section("Answer", blocks.answer(_answer_text(data), data.get("answer") is not None))]
    if formats.is_number(data.get("deadline_s")):
        out.append(Section("Candidates", blocks.rich_table(solve_table(data["candidates"], float(data["deadline_s"])))))
    if any(answer.get("probes") for answer in data["candidates"]):
        out.append(Section("Search", blocks.figure(_probes_figure(data), "Each simulation the search ran: "
                                                   "makespan and cost against the worker count (log scale).")))
    return out


def metrics(run: RunFolder) -> list[Metric]:
    """The answer's workers, makespan and cost."""
    best = _solve(run).get("answer") or {}
    return [Metric("workers", best.get("workers"), formats.number, True),
            Metric("makespan (h)", best["makespan_s"] / 3600.0 if best.get("makespan_s") else None, formats.number,
                   True),
            Metric("cost of the job", best.get("usd"), formats.usd, True)]  # fmt: skip


def provenance(run: RunFolder) -> list[tuple[str, str]]:
    """What was solved for, with how many replications per simulation."""
    data = _solve(run)
    return [("solved for", str(data.get("solve"))), ("replications per simulation", str(data.get("replications")))]


REPORT = KindReport("capsim simulate --solve", headline, sections, metrics, provenance=provenance)

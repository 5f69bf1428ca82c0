"""`capsim simulate --solve workers|hardware`: the inverse question of a batch job, answered by
simulation (capsim/plan/batchjob_search.py) and printed as a table or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from capsim.atomic import atomic_write_json
from capsim.errors import CapsimInputError
from capsim.scenario import Scenario

SOLVE_CHOICES = ("workers", "hardware")


def solve_command(
    scenario: Scenario,
    what: str,
    seed: int | None,
    replications: int,
    json_output: bool,
    out: Path | None,
    source: str,
    *,
    quiet: bool = False,
) -> None:
    """Answer `--solve what` for a batch scenario (loaded from `source`, named in errors): print it,
    and write `solve.json` under `out`; unless `quiet`, the simulations run so far on stderr."""
    if what not in SOLVE_CHOICES:
        raise CapsimInputError(f"expected one of {', '.join(SOLVE_CHOICES)}, got '{what}'", source="--solve")
    if scenario.serving.mode != "batch":
        raise CapsimInputError(
            f"answers batch jobs (serving.mode: batch); this scenario's mode is {scenario.serving.mode}",
            source="--solve",
        )
    from capsim.plan.batchjob_search import cheapest_hardware, fewest_workers
    from capsim.progress import ProgressReporter, counted

    # The bisection's length depends on its answers: the count of simulations run is what is known.
    reporter = ProgressReporter(f"solving {scenario.name} for {what}", None, counted("simulations"), enabled=not quiet)
    try:
        with reporter:
            found = cheapest_hardware(scenario, seed, replications, on_probe=reporter.step) if what == "hardware" else [
                fewest_workers(scenario, seed, replications, on_probe=reporter.step)]  # fmt: skip
    except CapsimInputError as exc:
        raise CapsimInputError(exc.detail, source=exc.source or source, field=exc.field) from None
    answers = [a.as_dict() for a in found]
    best = next((a for a in answers if a["workers"] is not None), None)
    result: dict[str, Any] = {
        "scenario": scenario.name,
        "solve": what,
        "deadline_s": scenario.serving.deadline_s,
        "replications": replications,
        "answer": best,
        "candidates": answers,
    }
    if out is not None:
        from capsim.output_folder import staged_output_folder

        with staged_output_folder(out, "simulate --solve") as folder:  # written as a whole, as simulate --out
            atomic_write_json(folder / "solve.json", result)
    if json_output:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    from capsim.report.batchjob_table import solve_table

    console = Console()
    deadline_s = result["deadline_s"]
    assert deadline_s is not None  # fewest_workers raises without one
    console.print(solve_table(answers, deadline_s))
    if best is None:
        console.print("[red]no candidate meets the deadline within serving.search.max_workers[/red]")
    else:
        console.print(f"answer: {best['workers']} worker(s) on {best['hardware']}, "
                      f"makespan {best['makespan_s']:,.0f} s, cost {best['usd']:.4g} USD")  # fmt: skip

"""`capsim sweep SCENARIO --vary PATH=VALUES...`: simulate a grid of variants; mark the cheapest meeting the SLO."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capsim.cli.app import app
from capsim.cli.options import (
    CatalogueOption,
    ClusterOption,
    EngineOption,
    ForceOption,
    JobsOption,
    QuietOption,
    engine_from_cli,
    require_positive,
)
from capsim.errors import CapsimInputError


@app.command("sweep")
def sweep_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    vary: Annotated[
        list[str],
        typer.Option("--vary", help="a field and its values: serving.replicas=2,4,8 or serving.replicas=2..12:2 "
                     "(repeatable; the grid is their product)"),
    ],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field in every variant")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed for every variant (overrides the scenario's)")] = None,
    replications: Annotated[int, typer.Option(help="replications per variant")] = 1,
    jobs: JobsOption = None,
    cluster: ClusterOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print only JSON on stdout")] = False,
    out: Annotated[Path | None, typer.Option(help="write sweep.csv, sweep.parquet, summaries.json, a chart")] = None,
    catalogue: CatalogueOption = None,
    engine: EngineOption = None,
    quiet: QuietOption = False,
    force: ForceOption = False,
) -> None:
    """Simulate every combination of the varied fields (same seed for all, bounded-memory mode) and
    mark the cheapest variant that meets the scenario's SLO. Ctrl-C keeps the variants that finished:
    they are shown and written, marked partial (exit code 130)."""
    from capsim.progress import ProgressReporter, counted
    from capsim.sweep import SweepInterrupted, parse_axis, run_sweep

    require_positive(replications, "--replications")
    require_positive(jobs, "--jobs")
    if seed is not None and seed < 0:
        raise CapsimInputError(f"expected an integer >= 0, got {seed}", source="--seed")
    chosen_engine = engine_from_cli(engine)
    axes = [parse_axis(text) for text in vary]
    if out is not None:  # a bad --out is refused before the sweep, not after it
        from capsim.output_folder import check_output_folder

        check_output_folder(out)
    with ProgressReporter(f"sweeping {scenario.name}", None, counted("variants"), enabled=not quiet) as reporter:
        try:
            result = run_sweep(scenario, axes, set_ or [], seed=seed, replications=replications, jobs=jobs,
                               catalogue=catalogue, progress=reporter.update, engine=chosen_engine, force=force,
                               cluster=cluster)  # fmt: skip
        except SweepInterrupted as stop:
            result = stop.result
            reporter.close("interrupted")
    written = []
    if out is not None and result.rows:  # interrupted before any variant finished: nothing to write
        from capsim.output_folder import staged_output_folder
        from capsim.report.sweep import write_sweep_folder

        with staged_output_folder(out, "sweep") as folder:  # written as a whole: all files or none
            written = [out / path.relative_to(folder) for path in write_sweep_folder(result, folder)]
    for warning in result.warnings:  # one line each, whatever the terminal's width
        sys.stderr.write(f"warning: {warning}\n")
    if json_output:
        payload = {"best": result.best_index, "best_per_load": result.best_indices if result.load_axes else None,
                   "warnings": result.warnings, "partial": result.partial,
                   "variants_total": result.variants_total or len(result.rows), "rows": result.rows}  # fmt: skip
        sys.stdout.write(json.dumps(payload, default=float) + "\n")
        _exit_if_partial(result.partial)
        return
    from capsim.report.sweep import sweep_table, verdict_lines

    console = Console()
    if not console.is_terminal:  # a file or a pipe: no reason to squeeze the table into 80 columns
        console = Console(width=200)
    if result.rows:  # none when interrupted before the first variant finished
        console.print(sweep_table(result))
    for line in verdict_lines(result):
        console.print(line)
    if written:
        console.print(f"wrote {', '.join(str(path) for path in written)}")
    _exit_if_partial(result.partial)


def _exit_if_partial(partial: bool) -> None:
    if partial:  # what finished has been shown and written; the exit code still says Ctrl-C stopped it
        raise typer.Exit(130)

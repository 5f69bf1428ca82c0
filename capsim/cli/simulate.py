"""`capsim simulate SCENARIO`: run a what-if and print the summary (or JSON), optionally writing a run folder."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from capsim.cli.app import app
from capsim.cli.options import (
    CatalogueOption,
    EngineOption,
    ForceOption,
    QuietOption,
    engine_from_cli,
    require_positive,
    scenario_from_cli,
)
from capsim.errors import CapsimInputError

if TYPE_CHECKING:  # the engine, numba and pandas load when a command runs, not at CLI start
    from capsim.scenario import Scenario

AUTO_REQUEST_LOG_MAX = 10_000_000
"""Above this many offered requests per replication, the request log (~50 bytes a request while the run
lasts) would need gigabytes: the default is then the bounded-memory mode."""


def keep_every_request(scenario: Scenario, request_log: bool | None, err: Console | None = None) -> bool:
    """The flag's choice, or the default: every request unless the run is too large to hold (said on
    `err` when given)."""
    if request_log is not None:
        return request_log
    from capsim.budget import expected_requests

    offered = expected_requests(scenario)
    if offered <= AUTO_REQUEST_LOG_MAX:
        return True
    if err is not None:
        err.print(f"note: {scenario.name} offers ~{offered:,.0f} requests, too many to keep each in memory: "
                  "keeping histograms instead (--request-log forces the full log)")  # fmt: skip
    return False


@app.command("simulate")
def simulate_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override a field: --set serving.replicas=4 (repeatable)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (overrides the scenario's)")] = None,
    replications: Annotated[int, typer.Option(help="independent replications, for 95% confidence intervals")] = 1,
    json_output: Annotated[bool, typer.Option("--json", help="print only the summary JSON on stdout")] = False,
    out: Annotated[Path | None, typer.Option(help="write summary.json, parquet files and plots here")] = None,
    request_log: Annotated[
        bool | None,
        typer.Option(
            "--request-log/--no-request-log",
            help="keep every request (requests.parquet) or only histograms (bounded memory); "
            f"default: every request unless the run offers more than {AUTO_REQUEST_LOG_MAX:,}",
        ),
    ] = None,
    catalogue: CatalogueOption = None,
    engine: EngineOption = None,
    solve: Annotated[
        str | None,
        typer.Option(
            help="batch jobs: find the fewest workers (workers) or the cheapest candidate (hardware) "
            "that meets serving.deadline_s, by simulation"
        ),
    ] = None,
    force: ForceOption = False,
    quiet: QuietOption = False,
) -> None:
    """Simulate a scenario and report latency, throughput, utilization, cost and SLO attainment."""
    from capsim.engine import simulate
    from capsim.progress import simulation_reporter
    from capsim.report.tables import print_summary
    from capsim.serving.dataplane.support import compiled_engine_is_cached

    require_positive(replications, "--replications")
    if seed is not None and seed < 0:
        raise CapsimInputError(f"expected an integer >= 0, got {seed}", source="--seed")
    loaded = scenario_from_cli(scenario, set_, catalogue)
    chosen_engine = engine_from_cli(engine)
    if out is not None:  # a bad --out is refused before the run, not after it
        from capsim.output_folder import check_output_folder

        check_output_folder(out)
    from capsim.budget import enforce, estimate_simulation, estimate_solve

    if solve is not None:
        from capsim.cli.solve import solve_command

        if loaded.serving.mode == "batch":  # (solve_command refuses the other modes)
            enforce(estimate_solve(loaded, replications), force, "--solve", str(scenario))
        solve_command(loaded, solve, seed, replications, json_output, out, str(scenario), quiet=quiet)
        return
    keep = keep_every_request(loaded, request_log)  # (silent: a refused run prints only its refusal)
    enforce(estimate_simulation(loaded, replications, keep, chosen_engine), force, source=str(scenario))
    err = Console(stderr=True)
    # (estimate_simulation above has checked that the compiled data plane, the only one, can run it)
    if loaded.serving.mode == "realtime" and not compiled_engine_is_cached():
        err.print("compiling the simulation's event loop (once per machine, ~20 s)")
    keep = keep_every_request(loaded, request_log, err)
    with simulation_reporter(loaded, replications, enabled=not quiet) as reporter:  # stderr only: --json stays clean
        result = simulate(loaded, seed=seed, replications=replications, keep_requests=keep,
                          progress=reporter.fraction, engine=chosen_engine)  # fmt: skip
    if out is not None:
        from capsim.output_folder import staged_output_folder
        from capsim.report.run_folder import write_run_folder  # matplotlib and pyarrow load only when needed

        with staged_output_folder(out, "simulate") as folder:  # written as a whole: all files or none
            written = write_run_folder(result, folder)
        if not json_output:
            err.print(f"wrote {len(written)} files to {out}")
    if json_output:
        sys.stdout.write(json.dumps(result.summary, indent=2) + "\n")
    elif loaded.serving.mode == "batch":
        from capsim.report.batchjob_table import print_batch_summary

        print_batch_summary(result.summary, Console())
    else:
        print_summary(result.summary, Console())
    if json_output:
        for warning in result.summary.get("warnings", []):
            err.print(f"warning: {warning}")

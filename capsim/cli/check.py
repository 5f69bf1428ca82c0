"""`capsim check SCENARIO`: validate a scenario file and show its offered load against capacity."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from capsim.cli.app import app
from capsim.cli.options import CatalogueOption, scenario_from_cli

if TYPE_CHECKING:
    from capsim.scenario import Scenario


@app.command("check")
def check_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field (repeatable)")] = None,
    catalogue: CatalogueOption = None,
) -> None:
    """Validate a scenario (exit 2 with the bad field named) and print a capacity estimate."""
    from capsim.serving.dataplane.support import choose_engine
    from capsim.stability import estimate_capacity, stability_warnings

    loaded = scenario_from_cli(scenario, set_, catalogue)
    if loaded.serving.mode == "realtime":
        choose_engine(loaded)  # a setting the data plane lacks is refused here, as `simulate` would
    console = Console()
    console.print(f"[green]ok[/green] {scenario}: scenario '{loaded.name}' is valid")
    _print_run_budget(loaded, console)
    if loaded.serving.mode == "batch":  # a job has no offered load: its estimate is a makespan floor
        from capsim.serving.batchjob.checks import makespan_floor_s

        deadline_s = loaded.serving.deadline_s
        console.print(
            f"makespan lower bound {makespan_floor_s(loaded):,.0f} s (mean times, perfect balance, no interruptions)"
            + (f"; deadline {deadline_s:,.0f} s" if deadline_s is not None else "")
        )
        return
    est = estimate_capacity(loaded)
    console.print(
        f"offered load {est.offered_rps:.4g} rps (peak {est.peak_offered_rps:.4g}), capacity with full batches "
        f"{est.capacity_rps:.4g} rps, utilization ≈ {est.utilization:.3f}"
    )
    if loaded.serving.mode == "graph":
        from capsim.stability import graph_stage_estimates

        for name, stage in graph_stage_estimates(loaded).items():
            console.print(f"  stage {name}: offered {stage.offered_rps:.4g} rps (peak {stage.peak_offered_rps:.4g}), "
                          f"capacity {stage.capacity_rps:.4g} rps, utilization ≈ {stage.utilization:.3f}")  # fmt: skip
    for warning in stability_warnings(loaded):
        console.print(f"[yellow]warning:[/yellow] {warning}")


def _print_run_budget(loaded: Scenario, console: Console) -> None:
    """What `simulate` (default flags) would cost, and its refusal when that exceeds this machine."""
    from capsim.budget import estimate_simulation, over_budget
    from capsim.cli.simulate import keep_every_request

    estimate = estimate_simulation(loaded, 1, keep_every_request(loaded, None))
    console.print(f"run budget: {estimate.describe()}", soft_wrap=True)
    refusal = over_budget(estimate, "simulate")
    if refusal is not None:
        console.print(f"[yellow]warning:[/yellow] {refusal.one_line()}", soft_wrap=True)

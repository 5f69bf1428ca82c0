"""`capsim plan SCENARIO`: the cheapest configuration that meets the SLO under the safety rules, by
search (capsim/plan/); a table on the terminal, `--json`, or a plan folder (`--out`, docs/plan.md)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from capsim.cli.app import app
from capsim.cli.options import CatalogueOption, ClusterOption, ForceOption, QuietOption, require_positive
from capsim.errors import CapsimInputError


def _floats(text: str | None, flag: str) -> list[float]:
    if not text:
        return []
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise CapsimInputError(f"expected numbers separated by commas, got '{text}'", source=flag) from None
        if not value >= 0 or value == float("inf"):
            raise CapsimInputError(f"expected numbers >= 0, got '{part.strip()}'", source=flag)
        values.append(value)
    if len(set(values)) != len(values):
        raise CapsimInputError("a value is listed twice", source=flag)
    return values


def _names(text: str | None) -> list[str]:
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    if text is not None and not names:
        raise CapsimInputError("expected hardware names separated by commas (see 'capsim hardware')",
                               source="--hardware")  # fmt: skip
    if len({n.lower() for n in names}) != len(names):
        raise CapsimInputError("a hardware name is listed twice", source="--hardware")
    return names


@app.command("plan")
def plan_command(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML file (with an slo, or a batch job's deadline_s)")],
    hardware: Annotated[
        str | None,
        typer.Option(
            help="candidate hardware, e.g. T4,L4,A10G (default: the scenario's plan.hardware, else its own hardware)"
        ),
    ] = None,
    vary: Annotated[
        list[str] | None,
        typer.Option(
            "--vary",
            help="another field to search: "
            "serving.autoscaling.metric=utilization,rps (repeatable; workload.* fields are traffic "
            "levels, each planned on its own)",
        ),
    ] = None,
    max_wait_ms: Annotated[
        str | None,
        typer.Option(
            "--max-wait-ms", help="batching windows to try, e.g. 0,2,5 (default: plan.max_wait_ms, else the scenario's)"
        ),
    ] = None,
    max_replicas: Annotated[
        int | None,
        typer.Option(
            help="upper bound of the searched replica count (an "
            "autoscaler's max_replicas); default plan.max_replicas, else 64"
        ),
    ] = None,
    max_utilization: Annotated[
        float,
        typer.Option(
            help="headroom: the peak offered load may use at most this share of the fleet's capacity with full batches"
        ),
    ] = 0.8,
    replications: Annotated[
        int,
        typer.Option(help="replications per configuration to start with (>= 2: the confidence rule needs an interval)"),
    ] = 3,
    max_replications: Annotated[
        int,
        typer.Option(
            help="confidence: replications are doubled up to this while "
            "the 95% interval of the tail straddles the SLO; then 'undecided'"
        ),
    ] = 12,
    min_replicas: Annotated[
        int, typer.Option(help="redundancy: the fewest replicas (or an autoscaler's min_replicas) a pick may have")
    ] = 2,
    n_plus_one: Annotated[
        bool, typer.Option("--n-plus-one", help="redundancy: one replica more than the smallest fleet meeting the SLO")
    ] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field of the scenario")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed (overrides the scenario's)")] = None,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            help="worker processes, here or in --cluster local, started once for the whole search (default 1: "
            "safe on a shared machine; each round runs one line per worker, so more pays off with free cores "
            "and several candidate lines)",
        ),
    ] = None,
    cluster: ClusterOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="print only plan.json's document on stdout")] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="write plan.json, candidates.csv, the cache and the pick's run "
            "folder (a rerun into the same folder resumes from its cache)"
        ),
    ] = None,
    catalogue: CatalogueOption = None,
    quiet: QuietOption = False,
    force: ForceOption = False,
) -> None:
    """Search for the cheapest configuration that meets the scenario's SLO, with headroom (peak load
    <= 80% of capacity), confidence (the 95% interval of the tail within the SLO, else 'undecided')
    and redundancy (>= 2 replicas) built in. "No configuration meets the SLO" is an answer (exit 0)
    with the closest candidates."""
    from capsim.plan.cache import ResultCache
    from capsim.plan.executor import check_cluster
    from capsim.plan.rules import SafetyRules
    from capsim.plan.run import PlanRequest, run_plan
    from capsim.progress import ProgressReporter, counted
    from capsim.sweep import parse_axis

    for value, flag in (
        (replications, "--replications"),
        (max_replications, "--max-replications"),
        (min_replicas, "--min-replicas"),
        (max_replicas, "--max-replicas"),
        (jobs, "--jobs"),
    ):
        require_positive(value, flag)  # fmt: skip
    if replications < 2:
        raise CapsimInputError(f"expected an integer >= 2 (an interval needs two replications), got {replications}",
                               source="--replications")  # fmt: skip
    if max_replications < replications:
        raise CapsimInputError(f"expected at least --replications ({replications}), got {max_replications}",
                               source="--max-replications")  # fmt: skip
    if not 0 < max_utilization <= 1:
        raise CapsimInputError(f"expected a share of capacity in (0, 1], got {max_utilization}",
                               source="--max-utilization")  # fmt: skip
    if seed is not None and seed < 0:
        raise CapsimInputError(f"expected an integer >= 0, got {seed}", source="--seed")
    check_cluster(cluster)
    if out is not None:
        from capsim.output_folder import check_output_folder

        check_output_folder(out)
    rules = SafetyRules(max_utilization=max_utilization, initial_replications=replications,
                        max_replications=max_replications, min_replicas=min_replicas,
                        n_plus_one=n_plus_one)  # fmt: skip
    request = PlanRequest(
        scenario_path=scenario, overrides=set_ or [], hardware=_names(hardware),
        axes=[parse_axis(text) for text in vary or []], max_wait_ms=_floats(max_wait_ms, "--max-wait-ms"),
        max_replicas=max_replicas, rules=rules, seed=seed, jobs=jobs or 1, cluster=cluster, catalogue=catalogue,
        force=force,
        command=shlex.join(["capsim", "plan", *sys.argv[2:]]) if _invoked_as_plan() else f"capsim plan {scenario}",
    )  # fmt: skip
    cache = ResultCache(out)
    with ProgressReporter(f"planning {scenario.name}", None, counted("simulations"), enabled=not quiet) as reporter:
        run = run_plan(request, cache, on_simulation=reporter.step)
    document = run.document
    if out is not None:
        from capsim.cli.simulate import keep_every_request
        from capsim.output_folder import staged_output_folder
        from capsim.plan.folder import write_plan_folder

        seed_used = int(document["seed"])
        with staged_output_folder(out, "plan") as folder:  # written as a whole: all files or none
            write_plan_folder(run, folder, cache, seed_used, lambda s: keep_every_request(s, None))
        cache.discard_side_folder()
    for trap in document["traps"]:  # one line each, whatever the terminal's width
        sys.stderr.write(f"warning: {trap['message']}\n")
    if json_output:
        sys.stdout.write(json.dumps(document) + "\n")
        return
    _print(document, out)


def _invoked_as_plan() -> bool:
    return len(sys.argv) > 1 and sys.argv[1] == "plan"


def _print(document: dict[str, Any], out: Path | None) -> None:
    from capsim.report.plan_table import answer_lines, plan_table

    console = Console()
    if not console.is_terminal:  # a file or a pipe: no reason to squeeze the table into 80 columns
        console = Console(width=200)
    for level in document["levels"]:
        console.print(plan_table(document, level))
        for line in answer_lines(document, level):
            console.print(line)
    console.print(f"simulated {document['simulations']} replications ({document['requests_simulated']:,} requests); "
                  f"{document['cached_simulations']} read from the cache")  # fmt: skip
    if out is not None:
        console.print(f"wrote {out}/plan.json")

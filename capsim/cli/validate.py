"""`capsim validate RUN_DIR --profile P`: replay a measured run in the simulator and compare.

Prints measured vs simulated — throughput, latency p50/p90/p99, queue wait, batch-size distribution —
with relative errors; writes `validation.json` into the run folder (atomically), and with `--plot`
both latency CDFs on one chart (`validation_cdf.png`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capsim.cli.app import app
from capsim.cli.calibrate import (
    InstancesOption,
    MaxBatchOption,
    MaxWaitOption,
    QueueCapacityOption,
    TimeoutOption,
    server_from_flags,
)
from capsim.cli.llm_calibration import KindOption, SchedulerOption, is_llm, validate_llm_command
from capsim.errors import CapsimInputError
from capsim.report.validation_table import comparison_table


@app.command("validate")
def validate_command(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by capsim loadtest")],
    profile: Annotated[Path, typer.Option(help="service-time profile to validate (capsim calibrate / profile)")],
    max_batch_size: MaxBatchOption = None,
    max_wait_ms: MaxWaitOption = None,
    instances: InstancesOption = 1,
    queue_capacity: QueueCapacityOption = None,
    timeout_ms: TimeoutOption = None,
    overhead_ms: Annotated[float | None, typer.Option(help="fixed per-request overhead (default: the profile's "
                                                      "calibrated value, else 0)")] = None,
    frontend: Annotated[bool, typer.Option("--frontend/--no-frontend", help="replay the front end the profile's "
                                           "calibration fitted (serving.frontend), if any")] = True,
    seed: Annotated[int, typer.Option(help="seed of the replay")] = 0,
    replications: Annotated[int, typer.Option(help="replications of the replay (pooled)")] = 3,
    plot: Annotated[bool, typer.Option("--plot", help="also write validation_cdf.png (both latency CDFs)")] = False,
    record: Annotated[bool, typer.Option("--record", help="append the errors to the profile's provenance")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print only the comparison JSON on stdout")] = False,
    kind: KindOption = "auto",
    scheduler: SchedulerOption = None,
) -> None:
    """Replay a measured run with a profile and print measured vs simulated with relative errors.
    LLM runs (--kind llm, or detected): --profile is a `capsim calibrate --kind llm` fit; TTFT, TPOT,
    ITL, E2E, throughput and tokens/s are compared."""
    from capsim.calibration.accuracy import error_line
    from capsim.calibration.frontend_fit import describe_frontend
    from capsim.calibration.validate import record_in_profile, validate_run, write_validation

    if replications < 1:
        raise CapsimInputError("expected an integer >= 1", field="--replications")
    if overhead_ms is not None and overhead_ms < 0:
        raise CapsimInputError("expected a number >= 0", field="--overhead-ms")
    if is_llm(kind, [run_dir]):
        for flag, given in (("--plot", plot), ("--record", record)):
            if given:
                raise CapsimInputError("not available for LLM runs yet (validation.json holds the comparison)",
                                       field=flag)  # fmt: skip
        validate_llm_command(run_dir, profile, scheduler, overhead_ms, json_output)
        return
    server = server_from_flags(max_batch_size, max_wait_ms, instances, queue_capacity, timeout_ms)
    result = validate_run(run_dir, profile, server=server, overhead_ms=overhead_ms, seed=seed,
                          replications=replications, frontend=frontend)
    written = write_validation(run_dir, result, plot)
    if record:
        record_in_profile(profile, result)
    err = Console(stderr=True)
    doc = result.document
    if json_output:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        console = Console(width=max(Console().width, 132))  # the tables are wide; never wrap them
        for row in doc["points"]:
            console.print(comparison_table(row))
        console.print(error_line(doc["errors"]))
        console.print(f"overhead {doc['overhead_ms']:.3f} ms ({doc['overhead_source']}); "
                      f"{doc['replications']} replication(s) pooled")
        if doc["frontend"]:
            console.print(f"front end (serving.frontend, from the profile): {describe_frontend(doc['frontend'])}")
        console.print("wrote " + ", ".join(str(p) for p in written))
    for warning in doc["warnings"]:
        err.print(f"warning: {warning}")

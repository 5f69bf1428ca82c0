"""`capsim calibrate RUN_DIR... -o PROFILE`: measured run folders → a calibrated service-time profile.

White box from the reference server's batch log, black box from latency-vs-load through the
simulator; `--holdout` keeps load points out of the fit and reports the error on them. The server
flags (`--max-batch-size`, …) are for runs against targets that did not report their own settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from capsim.cli.app import app
from capsim.cli.llm_calibration import KindOption, SchedulerOption, StepLogOption, calibrate_llm_command, is_llm
from capsim.errors import CapsimInputError

if TYPE_CHECKING:
    from capsim.calibration.calibrate import Method
    from capsim.calibration.runfolder import ServerSettings

MaxBatchOption = Annotated[int | None, typer.Option(help="the server's max batch size (when the run folder does "
                                                    "not record it)")]
MaxWaitOption = Annotated[float | None, typer.Option(help="the server's batching window in ms (default 0 when "
                                                     "--max-batch-size is given)")]
InstancesOption = Annotated[int, typer.Option(help="model instances sharing the queue (with --max-batch-size)")]
QueueCapacityOption = Annotated[int | None, typer.Option(help="queue capacity (with --max-batch-size)")]
TimeoutOption = Annotated[float | None, typer.Option(help="queue timeout in ms (with --max-batch-size)")]


def server_from_flags(max_batch_size: int | None, max_wait_ms: float | None, instances: int,
                      queue_capacity: int | None, timeout_ms: float | None) -> ServerSettings | None:
    """Server settings from flags, or None to take them from each run's manifest."""
    from capsim.calibration.runfolder import ServerSettings
    if max_batch_size is None:
        if max_wait_ms is not None:
            raise CapsimInputError("--max-wait-ms needs --max-batch-size", field="--max-wait-ms")
        return None
    checks = [(max_batch_size >= 1, "--max-batch-size", "an integer >= 1"),
              (max_wait_ms is None or max_wait_ms >= 0, "--max-wait-ms", "a number >= 0"),
              (instances >= 1, "--instances", "an integer >= 1"),
              (queue_capacity is None or queue_capacity >= 0, "--queue-capacity", "an integer >= 0"),
              (timeout_ms is None or timeout_ms > 0, "--timeout-ms", "a number > 0")]  # fmt: skip
    for ok, flag, expected in checks:
        if not ok:
            raise CapsimInputError(f"expected {expected}", field=flag)
    return ServerSettings(max_batch_size=max_batch_size, max_wait_ms=max_wait_ms or 0.0, instances=instances,
                          queue_capacity=queue_capacity, timeout_ms=timeout_ms)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}%"


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def points_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """One line per load point: measured → simulated p50, p99, throughput, and the relative errors."""
    from capsim.calibration.runfolder import ServerSettings
    table = Table(title=title, header_style="bold")
    for name in ("point", "server", "util.", "p50 ms meas→sim", "err", "p99 ms meas→sim", "err", "req/s meas→sim",
                 "err"):
        table.add_column(name, justify="left" if name in ("point", "server") else "right")
    for row in rows:
        m, s, e = row["measured"], row["simulated"], row["relative_error"]
        server = row["server"] if isinstance(row["server"], str) else ServerSettings(**row["server"]).key() \
            if row["server"] else "–"
        table.add_row(
            row["label"] + ("" if row.get("valid", True) else " (invalid)"), server, _num(row["utilization"]),
            f"{_num(m['latency_ms']['p50'])} → {_num(s['latency_ms']['p50'])}", _pct(e["latency_ms.p50"]),
            f"{_num(m['latency_ms']['p99'])} → {_num(s['latency_ms']['p99'])}", _pct(e["latency_ms.p99"]),
            f"{_num(m['throughput_rps'])} → {_num(s['throughput_rps'])}", _pct(e["throughput_rps"]),
        )
    return table


@app.command("calibrate")
def calibrate_command(
    run_dirs: Annotated[list[Path], typer.Argument(help="run folders written by capsim loadtest")],
    output: Annotated[Path, typer.Option("--output", "-o", help="profile file to write (JSON)")],
    method: Annotated[str, typer.Option(help="auto (white box when the runs have the server's batch log), "
                                        "white-box or black-box")] = "auto",
    holdout: Annotated[str | None, typer.Option(help="hold load points out of the fit and report the error on "
                                                "them: alternate, highest, server:GLOB (a configuration such as "
                                                "b1-w0-i1), or a glob over point labels")] = None,
    max_batch_size: MaxBatchOption = None,
    max_wait_ms: MaxWaitOption = None,
    instances: InstancesOption = 1,
    queue_capacity: QueueCapacityOption = None,
    timeout_ms: TimeoutOption = None,
    overhead_ms: Annotated[float | None, typer.Option(help="white box: fixed per-request overhead outside the "
                                                      "server (default: measured from the timing headers)")] = None,
    frontend: Annotated[bool, typer.Option("--frontend/--no-frontend", help="white box: fit the server's front "
                                           "end (serving.frontend) from the batch log's queue-entry times")] = True,
    window_lateness: Annotated[bool, typer.Option("--window-lateness", help="white box, with the front end: fit "
                                                  "how late the server's batching timer fires and replay it "
                                                  "(serving.frontend.window_late_quantiles_ms)")] = False,
    seed: Annotated[int, typer.Option(help="seed of the replays")] = 0,
    replications: Annotated[int, typer.Option(help="replications per replay when judging the fit")] = 3,
    max_evaluations: Annotated[int, typer.Option(help="black box: replays the parameter search may use")] = 150,
    json_output: Annotated[bool, typer.Option("--json", help="print only the result JSON on stdout")] = False,
    kind: KindOption = "auto",
    step_log: StepLogOption = None,
    scheduler: SchedulerOption = None,
) -> None:
    """Fit a service-time profile to measured runs and report its error (held out with --holdout).
    LLM runs (--kind llm, or detected) get fitted step-time coefficients: an llm_fitted service."""
    from capsim.calibration.accuracy import error_line
    from capsim.calibration.calibrate import calibrate, check_output_path
    from capsim.calibration.frontend_fit import describe_frontend

    if method not in ("auto", "white-box", "black-box"):
        raise CapsimInputError(f"expected auto, white-box or black-box, got {method!r}", field="--method")
    if replications < 1:
        raise CapsimInputError("expected an integer >= 1", field="--replications")
    if max_evaluations < 10:
        raise CapsimInputError("expected an integer >= 10", field="--max-evaluations")
    if overhead_ms is not None and overhead_ms < 0:
        raise CapsimInputError("expected a number >= 0", field="--overhead-ms")
    if is_llm(kind, run_dirs):
        if max_batch_size is not None or window_lateness:
            raise CapsimInputError("LLM runs are scheduled by the engine's settings (--scheduler), not batched",
                                   field="--max-batch-size" if max_batch_size is not None else "--window-lateness")
        calibrate_llm_command(run_dirs, output, method, holdout, scheduler, step_log, overhead_ms, max_evaluations,
                              json_output)  # fmt: skip
        return
    check_output_path(output)
    server = server_from_flags(max_batch_size, max_wait_ms, instances, queue_capacity, timeout_ms)
    err = Console(stderr=True)
    method_choice: Method = method  # type: ignore[assignment]
    asked = {"frontend": frontend, "window_late": window_lateness}  # calibration/mechanisms.py's names
    result = calibrate(run_dirs, method=method_choice, holdout=holdout, server=server, overhead_ms=overhead_ms,
                       seed=seed, replications=replications, max_evaluations=max_evaluations,
                       mechanisms=[name for name, on in asked.items() if on], echo=lambda line: err.print(line))
    result.profile.write(output)
    calibration = result.profile.provenance["calibration"]
    if json_output:
        sys.stdout.write(json.dumps({"profile": str(output), **calibration}, indent=2) + "\n")
    else:
        console = Console(width=max(Console().width, 132))  # the tables are wide; never wrap them
        console.print(points_table(f"fit points ({result.method}) — residuals", result.fit_rows))
        console.print("fit: " + error_line(result.fit_errors))
        if result.holdout_errors is not None:
            console.print(points_table("held-out points — prediction error", result.holdout_rows))
            console.print("[bold]held out:[/bold] " + error_line(result.holdout_errors))
        console.print(f"overhead outside the server: {result.overhead_ms:.3f} ms (set serving.overhead_ms to it)")
        if result.frontend is not None:
            console.print(f"front end: {describe_frontend(result.frontend)} (set serving.frontend to the profile's "
                          "provenance.calibration.frontend)")
        late = calibration["fit_detail"].get("window_lateness")
        if late and not (result.frontend or {}).get("window_late_quantiles_ms"):
            console.print(f"the server's batching window closed {late['median_ms']:.3f} ms late (median; p90 "
                          f"{late['p90_ms']:.3f} ms); the simulator closes it on time (docs/validation.md)")
        console.print(f"wrote {output}")
    for warning in result.warnings:
        err.print(f"warning: {warning}")

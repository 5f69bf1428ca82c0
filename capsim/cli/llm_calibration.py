"""The LLM branch of `capsim calibrate` and `capsim validate` (run folders of `capsim loadtest
--protocol openai`, chosen by `--kind llm` or detected from the folder): parse nothing new, call the
library (capsim/calibration/llm_calibrate.py, llm_validate.py) and print the tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from capsim.errors import CapsimInputError

KindOption = Annotated[str, typer.Option(help="auto (LLM when the run folder holds streamed LLM requests), "
                                         "realtime or llm")]  # fmt: skip
StepLogOption = Annotated[Path | None, typer.Option(help="LLM: the engine's per-step log (the reference LLM "
                                                    "server's --step-log file), when the run folder has no "
                                                    "steps.jsonl")]  # fmt: skip
SchedulerOption = Annotated[str | None, typer.Option(help="LLM: the engine's settings when the run folder does not "
                                                     "record them, comma-separated, e.g. 'max_num_seqs=256, "
                                                     "max_num_batched_tokens=2048, kv_cache_blocks=8192, "
                                                     "chunked_prefill=true'")]  # fmt: skip


def is_llm(kind: str, run_dirs: list[Path]) -> bool:
    """Whether the LLM branch handles these runs (`--kind`, else the first folder's contents)."""
    if kind not in ("auto", "realtime", "llm"):
        raise CapsimInputError(f"expected auto, realtime or llm, got {kind!r}", field="--kind")
    if kind != "auto":
        return kind == "llm"
    from capsim.calibration.llm_runfolder import is_llm_run

    return bool(run_dirs) and is_llm_run(Path(run_dirs[0]))


def calibrate_llm_command(run_dirs: list[Path], output: Path, method: str, holdout: str | None,
                          scheduler: str | None, step_log: Path | None, overhead_ms: float | None,
                          max_evaluations: int, json_output: bool) -> None:  # fmt: skip
    """`capsim calibrate --kind llm`: fit, print residuals and held-out errors, write the fit file."""
    from capsim.atomic import atomic_write_json
    from capsim.calibration.calibrate import check_output_path
    from capsim.calibration.llm_calibrate import LlmMethod, calibrate_llm
    from capsim.calibration.llm_compare import llm_error_line
    from capsim.report.llm_validation_table import llm_points_table

    check_output_path(output)
    err = Console(stderr=True)
    chosen: LlmMethod = method  # type: ignore[assignment]
    result = calibrate_llm(run_dirs, method=chosen, holdout=holdout, scheduler=scheduler, step_log=step_log,
                           overhead_ms=overhead_ms, max_evaluations=max_evaluations,
                           echo=lambda line: err.print(line))  # fmt: skip
    atomic_write_json(output, result.document)
    doc = result.document
    if json_output:
        sys.stdout.write(json.dumps({"fit": str(output), **doc}, indent=2) + "\n")
    else:
        console = Console(width=max(Console().width, 200))  # the tables are wide; never wrap them
        console.print(llm_points_table(f"fit points ({result.method}) — residuals", result.fit_rows))
        console.print("fit: " + llm_error_line(result.fit_errors))
        if result.holdout_errors is not None:
            console.print(llm_points_table("held-out points — prediction error", result.holdout_rows))
            console.print("[bold]held out:[/bold] " + llm_error_line(result.holdout_errors))
        detail = doc["provenance"]["calibration"]["fit_detail"]
        if "step_residuals" in detail:
            r = detail["step_residuals"]
            console.print(f"step-time residuals on {r['steps']} steps: RMSE {r['rmse_ms']:.3f} ms (mean step "
                          f"{r['mean_ms']:.3f} ms), |relative error| p50 {100 * r['abs_rel_p50']:.1f}%, p90 "
                          f"{100 * r['abs_rel_p90']:.1f}%")  # fmt: skip
            for label, h in (detail.get("step_holdout") or {}).items():
                console.print(f"held-out steps of {label}: RMSE {h['rmse_ms']:.3f} ms, |relative error| p50 "
                              f"{100 * h['abs_rel_p50']:.1f}%, p90 {100 * h['abs_rel_p90']:.1f}%")  # fmt: skip
        service = doc["service"]
        coefficients = ", ".join(f"{k} {service[k]:.5g}" for k in ("base_ms", "per_prefill_token_ms",
                                                                   "per_decode_seq_ms", "per_context_token_ms",
                                                                   "per_request_ms") if k in service)  # fmt: skip
        console.print(f"service: llm_fitted {coefficients}; overhead outside the engine {doc['overhead_ms']:.3f} ms")
        console.print(f"wrote {output} (its service: section is a scenario's service:)")
    for warning in result.warnings:
        err.print(f"warning: {warning}")


def validate_llm_command(run_dir: Path, fit: Path, scheduler: str | None, overhead_ms: float | None,
                         json_output: bool) -> None:  # fmt: skip
    """`capsim validate` on an LLM run folder: replay with the fit, print the tables, write validation.json."""
    from capsim.calibration.llm_compare import llm_error_line
    from capsim.calibration.llm_validate import validate_llm_run, write_llm_validation
    from capsim.report.llm_validation_table import llm_comparison_table

    doc = validate_llm_run(run_dir, fit, scheduler=scheduler, overhead_ms=overhead_ms)
    written = write_llm_validation(run_dir, doc)
    if json_output:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        console = Console(width=max(Console().width, 100))
        for row in doc["points"]:
            console.print(llm_comparison_table(row))
        console.print(llm_error_line(doc["errors"]))
        console.print(f"overhead outside the engine {doc['overhead_ms']:.3f} ms ({doc['overhead_source']})")
        console.print(f"wrote {written}")
    err = Console(stderr=True)
    for warning in doc["warnings"]:
        err.print(f"warning: {warning}")

"""`capsim calibrate RUN_DIR... --kind llm` as a library call: LLM run folders → an `llm_fitted`
service section with its error on the label.

1. Read the LLM load points (llm_runfolder.py) and split them into fit and held-out points
   (holdout.py's rules, configurations keyed by the engine's scheduler: `s256-t2048-cp`).
2. Fit the step time: white box from the engine's per-step log when every fit point has one
   (llm_stepfit.py: non-negative least squares on the logged steps), else black box from the
   client's TTFT/ITL through the simulator (llm_blackbox.py); `method` forces either.
   The white box then measures the time outside the engine: the median, over the completed requests
   of the lightest fit load, of measured TTFT − the replay's engine TTFT.
3. Replay every point with the result (llm_replay.py) and compare (llm_compare.py): residuals on the
   fit points, prediction error on the held-out ones; for the white box also the step-time error on
   the held-out points' own steps.
4. The output document (`capsim-llm-fit/1`): `service` — an `llm_fitted` mapping a scenario takes as
   its `service:` (coefficients + `fitted_on`: hardware, model, engine, date, source, fit_error) —
   `overhead_ms`, `scheduler` (the engine settings the fit measured) and `provenance.calibration`
   (method, runs with their roles, the fit's details, both errors, the command line).
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from capsim.calibration.holdout import split
from capsim.calibration.llm_blackbox import fit_llm_black_box
from capsim.calibration.llm_compare import aggregate_llm_errors, compare_llm_point
from capsim.calibration.llm_replay import LlmReplayModel, replay_llm
from capsim.calibration.llm_runfolder import LlmPoint, common_llm_model, read_llm_points
from capsim.calibration.llm_stepfit import fit_step_times, step_errors
from capsim.calibration.provenance import run_entry, server_report
from capsim.calibration.replay import ReplayWorkspace
from capsim.errors import CapsimInputError

FIT_FORMAT = "capsim-llm-fit/1"
LlmMethod = Literal["auto", "white-box", "black-box"]
Echo = Callable[[str], None]


@dataclass
class LlmCalibrationResult:
    """The fit document and the comparisons behind its errors."""

    document: dict[str, Any]
    method: str
    fit_rows: list[dict[str, Any]]
    holdout_rows: list[dict[str, Any]]
    fit_errors: dict[str, Any]
    holdout_errors: dict[str, Any] | None
    warnings: list[str]


def choose_llm_method(points: list[LlmPoint], method: LlmMethod) -> str:
    """`white-box` when every fit point has a step log (or it is asked for), else `black-box`."""
    if method == "white-box":
        for point in points:
            if point.steps is None:
                raise CapsimInputError("white-box calibration needs the engine's per-step log (steps.jsonl in the run "
                                       "folder, or --step-log FILE: the server's --step-log); use --method black-box "
                                       "for other targets", source=str(point.point.run_dir))  # fmt: skip
    if method != "auto":
        return method
    return "white-box" if all(p.steps is not None for p in points) else "black-box"


def _overhead_ms(points: list[LlmPoint], service: dict[str, Any], workspace: ReplayWorkspace) -> float:
    """The time outside the engine: median measured TTFT − replayed engine TTFT at the lightest fit load."""
    lightest = min(points, key=lambda p: p.point.rate_rps or 0.0)
    sim = replay_llm(lightest, LlmReplayModel(service=service), workspace)
    rows = lightest.point.requests
    ok = lightest.point.measured_mask() & np.isfinite(rows["ttft_ms"].to_numpy(dtype=float))
    measured_ms = rows["ttft_ms"].to_numpy(dtype=float)[ok]
    simulated_ms = ((sim.first_token_s - sim.sent_s) * 1e3)[ok]
    both = np.isfinite(simulated_ms)
    return max(float(np.median(measured_ms[both] - simulated_ms[both])), 0.0) if both.any() else 0.0


def _fitted_on(points: list[LlmPoint], method: str, errors: dict[str, Any]) -> dict[str, Any]:
    report = server_report(points[0].point)
    hardware = (report.get("hardware") or {}).get("name") or "unknown"
    version = report.get("version")
    engine = f"capsim reference LLM server {version}" if version else "unknown (black box)"
    fit_error = {k.replace(".", "_") + "_max_abs": v["max_abs"] for k, v in errors.items()
                 if isinstance(v, dict) and v.get("max_abs") is not None}  # fmt: skip
    folders = ", ".join(sorted({p.point.run_dir.name for p in points}))
    return {"hardware": hardware, "model": common_llm_model(points), "gpus_per_replica": 1, "engine": engine,
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
            "source": f"capsim calibrate --kind llm ({method}) on {folders}", "fit_error": fit_error}  # fmt: skip


def _evaluate(points: list[LlmPoint], model: LlmReplayModel, workspace: ReplayWorkspace) -> list[dict[str, Any]]:
    return [compare_llm_point(p, replay_llm(p, model, workspace)) for p in points]


def calibrate_llm(
    run_dirs: list[Path], *, method: LlmMethod = "auto", holdout: str | None = None, scheduler: str | None = None,
    step_log: Path | None = None, overhead_ms: float | None = None, max_evaluations: int = 150,
    echo: Echo = lambda _: None,
) -> LlmCalibrationResult:
    """Calibrate the LLM step time from `run_dirs` (module docstring)."""
    points = read_llm_points(run_dirs, scheduler, step_log)
    common_llm_model(points)
    by_id = {id(p.point): p for p in points}
    fit_lp, held_lp = split([p.point for p in points], holdout, lambda lp: by_id[id(lp)].config_key)
    fit_points, holdout_points = [by_id[id(p)] for p in fit_lp], [by_id[id(p)] for p in held_lp]
    chosen = choose_llm_method(fit_points, method)
    warnings = [f"{p.label}: the load tester marked this run invalid ({'; '.join(p.point.invalid_reasons)})"
                for p in points if not p.point.valid]  # fmt: skip
    echo(f"calibrating the LLM step time ({chosen}) on {len(fit_points)} load point(s), holding out "
         f"{len(holdout_points)}")
    detail: dict[str, Any] = {}
    with ReplayWorkspace() as workspace:
        if chosen == "white-box":
            steps = pd.concat([p.steps for p in fit_points if p.steps is not None], ignore_index=True)
            fit = fit_step_times(steps)
            service_obj = fit.service()
            service = {"kind": "llm_linear", **fit.coefficients_ms}
            detail["step_fit"] = fit.as_dict()
            detail["step_residuals"] = step_errors(service_obj, steps)
            detail["step_holdout"] = {p.label: step_errors(service_obj, p.steps) for p in holdout_points
                                      if p.steps is not None} or None  # fmt: skip
            if overhead_ms is None:
                overhead_ms = _overhead_ms(fit_points, service, workspace)
            echo(f"step fit on {fit.steps} steps: " + ", ".join(f"{k} {v:.5g}" for k, v in fit.coefficients_ms.items())
                 + f"; RMSE {detail['step_residuals']['rmse_ms']:.3f} ms"
                 + "".join(f"; {k} not identifiable" for k in fit.dropped))  # fmt: skip
        else:
            bb = fit_llm_black_box(fit_points, workspace, max_evaluations=max_evaluations)
            service = bb.service()
            detail["black_box"] = bb.as_dict()
            if overhead_ms is not None:
                warnings.append("--overhead-ms is ignored by the black-box fit, which fits the overhead itself")
            overhead_ms = bb.values_ms["overhead_ms"]
            echo(f"black-box fit ({bb.evaluations} replays{'' if bb.converged else ', not converged'}): "
                 + ", ".join(f"{k} {v:.5g}" for k, v in bb.values_ms.items()))
        model = LlmReplayModel(service=service, overhead_ms=overhead_ms)
        fit_rows = _evaluate(fit_points, model, workspace)
        holdout_rows = _evaluate(holdout_points, model, workspace)
    fit_errors = aggregate_llm_errors(fit_rows)
    holdout_errors = aggregate_llm_errors(holdout_rows) if holdout_rows else None
    headline = holdout_errors or fit_errors
    coefficients = {k: v for k, v in service.items() if k != "kind"}
    document = {
        "format": FIT_FORMAT,
        "service": {"kind": "llm_fitted", **coefficients, "fitted_on": _fitted_on(points, chosen, headline)},
        "overhead_ms": overhead_ms,
        "scheduler": fit_points[0].scheduler.model_dump(exclude_none=True),
        "provenance": {"calibration": {
            "method": chosen, "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": " ".join(sys.argv), "holdout_rule": holdout,
            "runs": [run_entry(p.point, "fit") | {"server": p.config_key} for p in fit_points]
            + [run_entry(p.point, "holdout") | {"server": p.config_key} for p in holdout_points],
            "fit_detail": detail, "fit": {"errors": fit_errors, "points": fit_rows},
            "holdout": {"errors": holdout_errors, "points": holdout_rows} if holdout_rows else None,
            "validation": {"scope": "held-out points" if holdout_errors else "fit points (nothing held out)",
                           **{k: v for k, v in headline.items() if isinstance(v, dict)}},
        }},
    }  # fmt: skip
    return LlmCalibrationResult(document=document, method=chosen, fit_rows=fit_rows, holdout_rows=holdout_rows,
                                fit_errors=fit_errors, holdout_errors=holdout_errors, warnings=warnings)


def read_llm_fit(path: Path) -> tuple[dict[str, Any], float]:
    """The `llm_linear` service mapping and the overhead (ms) of a `capsim calibrate --kind llm` file
    (or of any JSON/YAML file with an `llm_linear` / `llm_fitted` `service:` section)."""
    from capsim.input_files import read_json_file

    data = read_json_file(path) if path.suffix == ".json" else _read_yaml(path)
    service = data.get("service") if isinstance(data, dict) else None
    if not isinstance(service, dict) or service.get("kind") not in ("llm_linear", "llm_fitted"):
        raise CapsimInputError("expected an LLM step-time fit (capsim calibrate --kind llm) or a file with an "
                               "llm_linear / llm_fitted service: section",
                               source=str(path), field="service")  # fmt: skip
    from capsim.servicetime.llm_service import LlmLinearService

    fields = {k: v for k, v in service.items() if k in LlmLinearService.model_fields and k != "kind"}
    try:
        LlmLinearService.model_validate(fields)
    except ValueError as exc:
        raise CapsimInputError(f"not valid step-time coefficients: {str(exc).splitlines()[-1].strip()}",
                               source=str(path), field="service") from None  # fmt: skip
    overhead = data.get("overhead_ms", 0.0)
    if not isinstance(overhead, int | float) or overhead < 0:
        raise CapsimInputError("expected a number >= 0", source=str(path), field="overhead_ms")
    return {"kind": "llm_linear", **fields}, float(overhead)


def _read_yaml(path: Path) -> Any:
    from capsim.input_files import read_yaml_file

    return read_yaml_file(path)

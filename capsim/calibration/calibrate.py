"""`capsim calibrate` as a library call: run folders → calibrated profile with its error on the label.

1. Read the load points of every run folder (runfolder.py) and split them into fit and held-out
   points (holdout.py).
2. Fit: white box from the batch log (whitebox.py) when every fit point has one and the server's
   timing headers, else black box through the simulator (blackbox.py); `method` forces either. The
   white box also fits the mechanisms asked for (mechanisms.py: the front end, the batching timer's
   lateness), which the replay then simulates.
3. Replay every point with the result (replay.py) and compare with the measurement (compare.py,
   accuracy.py): residuals on the fit points, prediction error on the held-out ones.
4. Put the provenance and both errors into the profile (provenance.py).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from capsim.calibration.accuracy import ReplayModel, aggregate_errors, evaluate_points
from capsim.calibration.blackbox import fit_black_box, profile_from_linear
from capsim.calibration.holdout import split
from capsim.calibration.mechanisms import default_mechanisms, fit_mechanisms
from capsim.calibration.profile_checks import check_profile_for
from capsim.calibration.provenance import build_provenance, common_model, profile_metadata
from capsim.calibration.replay import ReplayWorkspace
from capsim.calibration.runfolder import LoadPoint, ServerSettings, read_run_folders, require_server
from capsim.calibration.steadiness import spike_warning
from capsim.calibration.whitebox import fit_white_box, overhead_estimate
from capsim.errors import CapsimInputError
from capsim.servicetime import Profile

Method = Literal["auto", "white-box", "black-box"]
Echo = Callable[[str], None]


@dataclass
class CalibrationResult:
    """The calibrated profile (provenance included) and the comparisons behind its errors."""

    profile: Profile
    method: str
    overhead_ms: float
    frontend: dict[str, Any] | None
    fit_rows: list[dict[str, Any]]
    holdout_rows: list[dict[str, Any]]
    fit_errors: dict[str, Any]
    holdout_errors: dict[str, Any] | None
    warnings: list[str]


def _white_box_possible(points: list[LoadPoint]) -> bool:
    return all(p.batches is not None and "server_queue_ms" in p.requests.columns
               and p.requests["server_queue_ms"].notna().any() for p in points)  # fmt: skip


def choose_method(points: list[LoadPoint], method: Method) -> str:
    """`white-box` when the runs allow it (or it is asked for), else `black-box`."""
    if method == "white-box":
        for point in points:
            if point.batches is None:
                raise CapsimInputError(
                    "white-box calibration needs the reference server's batch log (batches.parquet), which this "
                    "run does not have; use --method black-box for other targets", source=str(point.run_dir))
    if method != "auto":
        return method
    return "white-box" if _white_box_possible(points) else "black-box"


def calibrate(
    run_dirs: list[Path], *, method: Method = "auto", holdout: str | None = None, server: ServerSettings | None = None,
    overhead_ms: float | None = None, seed: int = 0, replications: int = 3, max_evaluations: int = 150,
    mechanisms: Collection[str] | None = None, echo: Echo = lambda _: None,
) -> CalibrationResult:
    """Calibrate a profile from `run_dirs` (see the module docstring). The white box also fits the
    `mechanisms` named (by default `frontend`: the server's front end from the batch log's queue-entry
    times, replayed as `serving.frontend`, the overhead then only what lies outside it; `window_late`:
    how late the batching timer fires, replayed as the front end's `window_late_quantiles_ms`)."""
    points = read_run_folders(run_dirs, server)
    common_model(points)
    for point in points:
        require_server(point)
    fit_points, holdout_points = split(points, holdout)
    chosen = choose_method(fit_points, method)
    warnings = [f"{p.label}: the load tester marked this run invalid ({'; '.join(p.invalid_reasons)})"
                for p in points if not p.valid]  # fmt: skip
    warnings += [w for w in map(spike_warning, points) if w]
    echo(f"calibrating ({chosen}) on {len(fit_points)} load point(s), holding out {len(holdout_points)}")
    with ReplayWorkspace() as workspace:
        fit_detail: dict[str, Any]
        frontend_spec: dict[str, Any] | None = None
        if chosen == "white-box":
            profile, fit_detail = fit_white_box(fit_points, **profile_metadata(fit_points, chosen))
            wanted = default_mechanisms() if mechanisms is None else mechanisms
            fits = fit_mechanisms(fit_points, holdout_points, wanted, echo)
            fit_detail.update(fits.detail)
            warnings += fits.warnings
            frontend_spec = fits.serving_patch.get("frontend")
            if overhead_ms is None:
                overhead_ms = fits.serving_patch.get("overhead_ms")
            # The whole time outside the server as one constant: the overhead when there is no
            # front end, and recorded beside it when there is (what a replay without it needs).
            estimate = overhead_estimate(fit_points)
            fit_detail["overhead"] = estimate.as_dict()
            if overhead_ms is None:
                overhead_ms = estimate.median_ms
        else:
            largest = max(require_server(p).max_batch_size for p in points)
            fit = fit_black_box(fit_points, workspace, max_evaluations=max_evaluations, seed=seed)
            fit_detail = fit.as_dict()
            if overhead_ms is not None:
                warnings.append("--overhead-ms is ignored by the black-box fit, which fits the overhead itself")
            overhead_ms = fit.params.overhead_ms
            requests_used = int(sum(p.measured_mask().sum() for p in fit_points))
            profile = profile_from_linear(fit.params, largest, requests_used, **profile_metadata(fit_points, chosen))
            echo(f"black-box fit: base {fit.params.base_ms:.3f} ms + {fit.params.per_item_ms:.3f} ms/request, "
                 f"cv {fit.params.cv:.2f}, overhead {fit.params.overhead_ms:.3f} ms ({fit.evaluations} replays"
                 f"{'' if fit.converged else ', not converged'})")
        profile_path = workspace.write_profile(profile)
        for point in points:
            warnings += check_profile_for(profile, "the calibrated profile", point)
        service: dict[str, Any] = {"kind": "profile", "path": str(profile_path)}
        model = ReplayModel(service=service, overhead_ms=overhead_ms, frontend=frontend_spec)
        fit_rows = evaluate_points(fit_points, model, workspace, seed=seed, replications=replications)
        holdout_rows = evaluate_points(holdout_points, model, workspace, seed=seed, replications=replications)
    fit_errors = aggregate_errors(fit_rows)
    holdout_errors = aggregate_errors(holdout_rows) if holdout_rows else None
    provenance = build_provenance(chosen, fit_points, holdout_points, overhead_ms, fit_detail, fit_errors,
                                  holdout_errors, fit_rows, holdout_rows, holdout, frontend_spec)
    profile = profile.model_copy(update={"provenance": provenance})
    return CalibrationResult(profile=profile, method=chosen, overhead_ms=overhead_ms, frontend=frontend_spec,
                             fit_rows=fit_rows,
                             holdout_rows=holdout_rows, fit_errors=fit_errors, holdout_errors=holdout_errors,
                             warnings=warnings)


def check_output_path(path: Path) -> None:
    """The profile is written to a file: refuse a bad destination before any work is done."""
    from capsim.output_folder import check_output_file

    check_output_file(path, "--output")

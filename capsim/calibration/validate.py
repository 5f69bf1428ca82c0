"""`capsim validate RUN_DIR --profile P` as a library call: replay a measured run, compare, record.

The run is replayed with its own arrival instants and server settings and the profile's service
times (replay.py); measured and simulated statistics and their relative errors (compare.py) go to
`validation.json` in the run folder, written atomically, and — when asked — the latency CDFs of both
to `validation_cdf.png`.

The fixed overhead comes from `--overhead-ms` when given, else from the profile's calibration
provenance, else 0 (a profile from `capsim profile` measured the model alone). The server's front
end (`serving.frontend`) comes from the provenance too when the calibration fitted one, unless
`frontend=False`. Provenance keys of removed mechanisms (`service_correlation`, `stalls`) are
ignored (docs/validation.md).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from capsim.atomic import atomic_write_json
from capsim.calibration.accuracy import aggregate_errors, point_utilization
from capsim.calibration.compare import compare_point
from capsim.calibration.profile_checks import check_profile_for
from capsim.calibration.replay import ReplayWorkspace, replay
from capsim.calibration.runfolder import LoadPoint, ServerSettings, read_run_folder
from capsim.calibration.steadiness import spike_warning
from capsim.calibration.whitebox import outside_server_ms, window_lateness_ms
from capsim.servicetime import Profile, read_profile

VALIDATION_FORMAT = "capsim-validation/1"
VALIDATION_FILE = "validation.json"
CDF_FILE = "validation_cdf.png"


@dataclass
class ValidationResult:
    """The comparison document (what validation.json holds) and the latencies behind the CDF plot."""

    document: dict[str, Any]
    latencies_ms: dict[str, tuple[np.ndarray, np.ndarray]]  # label -> (measured, simulated)


def overhead_from_profile(profile: Profile) -> float | None:
    """The overhead a calibration recorded in the profile's provenance, if any."""
    calibration = profile.provenance.get("calibration") if isinstance(profile.provenance, dict) else None
    value = calibration.get("overhead_ms") if isinstance(calibration, dict) else None
    return float(value) if isinstance(value, int | float) else None


def constant_overhead_from_profile(profile: Profile) -> float | None:
    """The whole time outside the server as one constant (`fit_detail.overhead.median_ms`), which a
    replay without the calibrated front end adds in its place."""
    calibration = profile.provenance.get("calibration") if isinstance(profile.provenance, dict) else None
    detail = calibration.get("fit_detail") if isinstance(calibration, dict) else None
    overhead = detail.get("overhead") if isinstance(detail, dict) else None
    value = overhead.get("median_ms") if isinstance(overhead, dict) else None
    return float(value) if isinstance(value, int | float) else None


def frontend_from_profile(profile: Profile) -> dict[str, Any] | None:
    """The front end (`serving.frontend` mapping) a calibration recorded in the profile, if any."""
    calibration = profile.provenance.get("calibration") if isinstance(profile.provenance, dict) else None
    value = calibration.get("frontend") if isinstance(calibration, dict) else None
    return dict(value) if isinstance(value, dict) else None


def network_floor_from_profile(profile: Profile) -> float:
    """The network hop before the server that the calibrated front end's fit found and the replay
    adds to its constant overhead (`fit_detail.frontend.network_floor_ms`); 0 when none."""
    calibration = profile.provenance.get("calibration") if isinstance(profile.provenance, dict) else None
    detail = calibration.get("fit_detail") if isinstance(calibration, dict) else None
    frontend = detail.get("frontend") if isinstance(detail, dict) else None
    value = frontend.get("network_floor_ms") if isinstance(frontend, dict) else None
    return float(value) if isinstance(value, int | float) else 0.0


def unmodelled(point: LoadPoint, overhead_ms: float, frontend: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """What the measured server did that the replay's replica may not (reference server only): the
    spread of the per-request time outside the server against the constant overhead the replay adds
    (and whether a front end is replayed beside it), and how late the batching window closed (and
    whether that lateness is replayed). These explain most latency misses (docs/validation.md)."""
    outside = outside_server_ms(point)
    if outside.size == 0:
        return None
    p50, p99 = np.percentile(outside, [50, 99])
    return {"outside_server_ms": {"p50": float(p50), "p99": float(p99)}, "overhead_ms": overhead_ms,
            "frontend_replayed": frontend is not None,
            "window_late_replayed": bool(frontend and frontend.get("window_late_quantiles_ms")),
            "window_lateness_ms": window_lateness_ms([point])}  # fmt: skip


def validate_run(
    run_dir: Path, profile_path: Path, *, server: ServerSettings | None = None, overhead_ms: float | None = None,
    seed: int = 0, replications: int = 3, frontend: bool = True,
) -> ValidationResult:
    """Replay every step of `run_dir` with the profile and compare (nothing is written here)."""
    profile = read_profile(Path(profile_path), field="--profile")
    points = read_run_folder(run_dir, server)
    warnings: list[str] = []
    for point in points:
        warnings += check_profile_for(profile, profile_path, point)
        if not point.valid:
            warnings.append(f"{point.label}: the load tester marked this run invalid "
                            f"({'; '.join(point.invalid_reasons)})")
        spike = spike_warning(point)
        if spike:
            warnings.append(spike)
    recorded = overhead_from_profile(profile)
    source = "profile provenance"
    if not frontend and frontend_from_profile(profile) is not None and constant_overhead_from_profile(profile):
        # The calibrated overhead leaves out the front end's time; without the front end, the whole
        # time outside the server stands in for it.
        recorded, source = constant_overhead_from_profile(profile), "profile provenance, without the front end"
    overhead_source = "--overhead-ms" if overhead_ms is not None else source if recorded is not None \
        else "none (0 ms): the profile records no overhead; give --overhead-ms"
    overhead = overhead_ms if overhead_ms is not None else recorded if recorded is not None else 0.0
    frontend_spec = frontend_from_profile(profile) if frontend else None
    # Queue waits count from the send on both sides: the replay moved the fitted hop in to the end.
    in_hop_ms = network_floor_from_profile(profile) if frontend_spec is not None else 0.0
    service: dict[str, Any] = {"kind": "profile", "path": str(Path(profile_path).resolve())}
    rows = []
    latencies: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with ReplayWorkspace() as workspace:
        for point in points:
            sim = replay(point, service, overhead, workspace, seed=seed, replications=replications,
                         frontend=frontend_spec)
            comparison = compare_point(point, sim, in_hop_ms=in_hop_ms)
            rows.append({"label": point.label, "step": point.step, "rate_rps": point.rate_rps,
                         "server": point.server.__dict__ if point.server else None, "valid": point.valid,
                         "utilization": point_utilization(comparison), **comparison,
                         "unmodelled": unmodelled(point, overhead, frontend_spec)})  # fmt: skip
            measured_mask = point.measured_mask()
            ok = measured_mask & (point.requests["status"].to_numpy() // 100 == 2)
            sim_ok = np.tile(measured_mask, sim.replications) & sim.completed
            latencies[point.label] = (point.requests["latency_ms"].to_numpy(dtype=float)[ok],
                                      (sim.end_s - sim.arrival_s)[sim_ok] * 1000.0)
    document = {
        "format": VALIDATION_FORMAT,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_dir": str(run_dir),
        "profile": {"path": str(profile_path), "source": profile.source, "model": profile.model,
                    "hardware": profile.hardware, "created_utc": profile.created_utc},
        "overhead_ms": overhead,
        "overhead_source": overhead_source,
        "frontend": frontend_spec,
        "seed": seed,
        "replications": replications,
        "points": rows,
        "errors": aggregate_errors(rows),
        "warnings": warnings,
    }
    return ValidationResult(document=document, latencies_ms=latencies)


def write_validation(run_dir: Path, result: ValidationResult, plot: bool) -> list[Path]:
    """Write validation.json (and the CDF plot) into the run folder, atomically; returns the paths."""
    written = [Path(run_dir) / VALIDATION_FILE]
    atomic_write_json(written[0], result.document)
    if plot:
        from capsim.calibration.cdf_plot import plot_latency_cdfs  # matplotlib only when asked

        path = Path(run_dir) / CDF_FILE
        plot_latency_cdfs(result.latencies_ms, path, title=f"{Path(run_dir).name}: measured vs simulated")
        written.append(path)
    return written


def record_in_profile(profile_path: Path, result: ValidationResult) -> None:
    """Append this validation's headline errors to the profile's `provenance.validations`."""
    profile = read_profile(Path(profile_path), field="--profile")
    errors = result.document["errors"]
    entry = {"run_dir": result.document["run_dir"], "created_utc": result.document["created_utc"],
             "overhead_ms": result.document["overhead_ms"], "frontend": result.document.get("frontend"),
             "utilization_le_80": errors["utilization_le_80"],
             "all": errors["all"]}  # fmt: skip
    provenance = dict(profile.provenance)
    provenance["validations"] = [*provenance.get("validations", []), entry]
    profile.model_copy(update={"provenance": provenance}).write(Path(profile_path))

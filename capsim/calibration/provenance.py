"""Provenance of a calibrated profile: which runs, on what hardware, with which software, how good.

A profile written by `capsim calibrate` carries, under `provenance.calibration`:

* `method` (`white-box` / `black-box`), `created_utc`, `capsim_version`, `command`;
* `runs`: every load point used, with its role (`fit` or `holdout`), folder, step, offered rate,
  server settings, start time and whether the load tester judged it valid;
* `hardware` and `versions`: the server's hardware as it reported it (`/debug/config`) and the load
  generator's machine and package versions (the run's manifest);
* `overhead_ms`: the fixed per-request overhead the replay adds (set `serving.overhead_ms` to it);
* `frontend`: the server's front end the replay queues requests through (set `serving.frontend` to
  it), or null when none was fitted (black box, or a batch log without queue-entry times);
* `fit_detail`: the fit's own figures, and under each calibration mechanism's name (`frontend`,
  `window_late`: mechanisms.py) what it fitted and its `error` on the fit and held-out points;
* (profiles calibrated before these mechanisms were removed may also hold `service_correlation` and
  `stalls`: nothing reads them any more; docs/validation.md names the commit that still has them);
* `fit` (the fit's own residuals) and `holdout` (the prediction error on points the fit never saw):
  aggregated errors (accuracy.py) and one row per point;
* `validation`: the headline the simulator shows — the held-out error when there is one, else the
  fit error, labelled as such.
"""

from __future__ import annotations

import datetime as dt
import sys
from importlib import metadata
from typing import Any

from capsim.calibration.runfolder import LoadPoint
from capsim.errors import CapsimInputError


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def common_model(points: list[LoadPoint]) -> str | None:
    """The one model all points measured; an error naming the runs when they disagree."""
    models = {p.model for p in points if p.model}
    if len(models) > 1:
        seen = ", ".join(f"{p.run_dir.name}: {p.model}" for p in points)
        raise CapsimInputError(f"the runs measured different models ({seen}); calibrate one model at a time",
                               field="RUN_DIR")
    return next(iter(models), None)


def server_report(point: LoadPoint) -> dict[str, Any]:
    """What the reference server said about itself (`/debug/config`), or {} for other targets."""
    reported = (point.manifest.get("target") or {}).get("server_config")
    return reported if isinstance(reported, dict) else {}


def profile_metadata(points: list[LoadPoint], method: str) -> dict[str, Any]:
    """The profile's `model`, `hardware`, `framework`, `created_utc` and `source` fields."""
    first = points[0]
    report = server_report(first)
    hardware = dict(report.get("hardware") or {})
    model = {"name": common_model(points)}
    if report.get("model"):
        model["metadata"] = report["model"]
    framework: dict[str, Any] = {}
    if hardware.get("torch_version"):
        framework = {"name": "torch", "version": hardware.get("torch_version"), "device": hardware.get("device")}
    if not hardware:  # not the reference server: all we know is the generator's machine
        hardware = {"name": "unknown (black box)", "load_generator": first.manifest.get("hardware")}
    return {
        "model": model,
        "hardware": hardware,
        "framework": framework,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": f"capsim calibrate ({method})",
    }


def run_entry(point: LoadPoint, role: str) -> dict[str, Any]:
    """One load point as provenance records it."""
    return {
        "role": role, "label": point.label, "run_dir": str(point.run_dir), "step": point.step,
        "rate_rps": point.rate_rps, "model": point.model,
        "server": point.server.__dict__ if point.server is not None else None,
        "start_utc": dt.datetime.fromtimestamp(point.start_s, tz=dt.UTC).isoformat(),
        "measured_s": point.duration_s - point.warmup_s, "requests": int(point.measured_mask().sum()),
        "valid": point.valid, "invalid_reasons": point.invalid_reasons,
    }  # fmt: skip


def headline(fit: dict[str, Any], holdout: dict[str, Any] | None) -> dict[str, Any]:
    """The error the simulator's summary shows: held out when available (a prediction error), else
    the fit's (labelled so; it flatters the model)."""
    source, agg = ("holdout", holdout) if holdout is not None else ("fit", fit)
    scope = "utilization_le_80" if agg["utilization_le_80"]["points"] else "all"
    part = agg[scope]
    return {
        "kind": source, "scope": scope, "points": part["points"],
        "throughput_rps_max_abs": part["throughput_rps"]["max_abs"],
        "latency_p50_max_abs": part["latency_ms.p50"]["max_abs"],
        "latency_p99_max_abs": part["latency_ms.p99"]["max_abs"],
    }  # fmt: skip


def build_provenance(
    method: str, fit_points: list[LoadPoint], holdout_points: list[LoadPoint], overhead_ms: float,
    fit_detail: dict[str, Any], fit_errors: dict[str, Any], holdout_errors: dict[str, Any] | None,
    fit_rows: list[dict[str, Any]], holdout_rows: list[dict[str, Any]], holdout_rule: str | None,
    frontend: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `provenance` object of a calibrated profile (see the module docstring)."""
    first = fit_points[0]
    calibration = {
        "method": method,
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "capsim_version": _version("capsim"),
        "command": list(sys.argv),
        "runs": [run_entry(p, "fit") for p in fit_points] + [run_entry(p, "holdout") for p in holdout_points],
        "hardware": {"server": server_report(first).get("hardware"), "load_generator": first.manifest.get("hardware")},
        "versions": {"load_test": first.manifest.get("versions"), "server": server_report(first).get("version")},
        "overhead_ms": overhead_ms,
        "frontend": frontend,
        "fit_detail": fit_detail,
        "holdout_rule": holdout_rule,
        "fit": {"errors": fit_errors, "points": [_row_brief(r) for r in fit_rows]},
        "holdout": {"errors": holdout_errors, "points": [_row_brief(r) for r in holdout_rows]}
        if holdout_errors is not None else None,
        "validation": headline(fit_errors, holdout_errors),
    }
    return {"calibration": calibration}


def _row_brief(row: dict[str, Any]) -> dict[str, Any]:
    """A point's comparison without the batch-size distributions (they are long; validate shows them)."""
    def brief(stats: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in stats.items() if k != "batch_size"}
        if stats.get("batch_size"):
            out["batch_size_mean"] = stats["batch_size"]["mean"]
        return out

    return {"label": row["label"], "rate_rps": row["rate_rps"], "server": row["server"],
            "utilization": row["utilization"], "measured": brief(row["measured"]),
            "simulated": brief(row["simulated"]), "relative_error": row["relative_error"]}  # fmt: skip

"""`capsim validate RUN_DIR --profile FIT` on an LLM run folder: replay and compare.

Every step of the run is replayed with its exact send times and token counts and the engine's own
scheduler settings (llm_replay.py), timed by the fit's step-time coefficients plus its overhead
outside the engine (`capsim calibrate --kind llm`'s file, or any file with an `llm_linear` /
`llm_fitted` `service:`), and compared with the measurement (llm_compare.py): TTFT, TPOT, ITL and
E2E (mean, p50, p90, p99), throughput and tokens/s, with relative errors. The comparison goes to
`validation.json` in the run folder (atomically; format `capsim-llm-validation/1`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from capsim.atomic import atomic_write_json
from capsim.calibration.llm_calibrate import read_llm_fit
from capsim.calibration.llm_compare import aggregate_llm_errors, compare_llm_point
from capsim.calibration.llm_replay import LlmReplayModel, replay_llm
from capsim.calibration.llm_runfolder import read_llm_points
from capsim.calibration.replay import ReplayWorkspace

LLM_VALIDATION_FORMAT = "capsim-llm-validation/1"
VALIDATION_FILE = "validation.json"


def validate_llm_run(run_dir: Path, fit_path: Path, *, scheduler: str | None = None,
                     overhead_ms: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The comparison document of `run_dir` replayed with the fit at `fit_path` (module docstring);
    `overhead_ms` overrides the fit's."""
    service, fitted_overhead_ms = read_llm_fit(fit_path)
    overhead = fitted_overhead_ms if overhead_ms is None else overhead_ms
    points = read_llm_points([run_dir], scheduler)
    model = LlmReplayModel(service=service, overhead_ms=overhead)
    with ReplayWorkspace() as workspace:
        rows = [compare_llm_point(p, replay_llm(p, model, workspace)) for p in points]
    warnings = [f"{p.label}: the load tester marked this run invalid ({'; '.join(p.point.invalid_reasons)})"
                for p in points if not p.point.valid]  # fmt: skip
    return {
        "format": LLM_VALIDATION_FORMAT, "run_dir": str(run_dir), "fit": str(fit_path),
        "created_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "service": service, "overhead_ms": overhead,
        "overhead_source": "--overhead-ms" if overhead_ms is not None else "the fit",
        "points": rows, "errors": aggregate_llm_errors(rows), "warnings": warnings,
    }  # fmt: skip


def write_llm_validation(run_dir: Path, document: dict[str, Any]) -> Path:
    """Write validation.json into the run folder, atomically; returns its path."""
    path = Path(run_dir) / VALIDATION_FILE
    atomic_write_json(path, document)
    return path

"""Reading a load-test run folder (written by `capsim loadtest`) into load points for calibration.

A *load point* is one step of a run: one offered load against one server configuration. A plain run
has one step, a sweep one per rate. Each point carries its request rows, the reference server's
batches that served them (when the run has `batches.parquet`), the server's batching settings (from
`manifest.json` when the target reported them, else from flags) and the measured interval.

Every problem with a folder is a `CapsimInputError` naming the folder, the file and what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.calibration.runfolder_schema import ManifestView, StepView, SummaryView, read_manifest, read_summary
from capsim.errors import CapsimInputError
from capsim.input_tables import ColumnKind, read_parquet_file
from capsim.loadtest.records import INFERENCE

REQUIRED_FILES = ("manifest.json", "summary.json", "requests.parquet")
REQUEST_COLUMNS: dict[str, ColumnKind] = {"intended_s": "number", "sent_s": "number", "latency_ms": "number",
                                           "status": "number"}  # fmt: skip
OPTIONAL_REQUEST_COLUMNS: dict[str, ColumnKind] = {"step": "integer", "kind": "text"}
BATCH_COLUMNS: dict[str, ColumnKind] = {"size": "number", "start_s": "number", "end_s": "number"}
# A batch belongs to the step whose requests were in flight when it started (steps are sequential,
# with Locust restarted in between, so their time spans never overlap); this much slack covers the
# network hop between the client's send and the server's arrival.
_BATCH_SLACK_S = 0.5


@dataclass(frozen=True)
class ServerSettings:
    """How the measured server batched: what the replay configures the simulated replica with."""

    max_batch_size: int
    max_wait_ms: float
    instances: int = 1
    queue_capacity: int | None = None
    timeout_ms: float | None = None

    def key(self) -> str:
        """A short label of the configuration (used to group load levels)."""
        return f"b{self.max_batch_size}-w{self.max_wait_ms:g}-i{self.instances}"


@dataclass
class LoadPoint:
    """One step of one run folder: one offered load against one server configuration."""

    run_dir: Path
    step: int
    steps_in_run: int
    rate_rps: float | None
    model: str | None
    start_s: float
    warmup_s: float
    duration_s: float
    requests: pd.DataFrame
    batches: pd.DataFrame | None
    server: ServerSettings | None
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)
    valid: bool = True
    invalid_reasons: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """`run-folder-name` for a one-step run, `run-folder-name#step` for a sweep step."""
        name = self.run_dir.name
        return name if self.steps_in_run == 1 else f"{name}#{self.step}"

    @property
    def window_s(self) -> tuple[float, float]:
        """The measured interval (epoch seconds): after the warm-up, until the schedule ends."""
        return self.start_s + self.warmup_s, self.start_s + self.duration_s

    def measured_mask(self) -> np.ndarray:
        """Rows whose intended send falls in the measured interval (the load tester's own rule)."""
        lo, hi = self.window_s
        intended = self.requests["intended_s"].to_numpy()
        return (intended >= lo) & (intended < hi)

    def with_server(self, server: ServerSettings) -> LoadPoint:
        """A copy with the given server settings."""
        return replace(self, server=server)


def _check_complete(run_dir: Path) -> None:
    if not run_dir.exists():
        raise CapsimInputError("run folder not found", source=str(run_dir))
    if not run_dir.is_dir():
        raise CapsimInputError("expected a run folder (a directory written by capsim loadtest)", source=str(run_dir))
    present = {p.name for p in run_dir.iterdir()}
    missing = [name for name in REQUIRED_FILES if name not in present]
    if not missing:
        return
    if "parts" in present:
        raise CapsimInputError(
            f"the load test never finished writing this folder ({', '.join(missing)} missing, rows still in "
            f"parts/); run `capsim loadtest-finalize {run_dir}` first", source=str(run_dir))
    if not present:
        raise CapsimInputError("empty run folder: expected manifest.json, summary.json and requests.parquet "
                               "(written by capsim loadtest)", source=str(run_dir))
    raise CapsimInputError(f"partial run folder: {', '.join(missing)} missing (expected "
                           f"{', '.join(REQUIRED_FILES)}, written by capsim loadtest)", source=str(run_dir))


def settings_from_manifest(view: ManifestView) -> ServerSettings | None:
    """The reference server's batching settings as its `/debug/config` reported them, if recorded."""
    report = view.target.server_config if view.target is not None else None
    config = report.config if report is not None else None
    if config is None or config.max_batch_size is None:
        return None
    timeout_ms = config.timeout_ms or 0.0
    return ServerSettings(
        max_batch_size=config.max_batch_size,
        max_wait_ms=config.max_wait_ms,
        instances=config.instances,
        queue_capacity=config.queue_capacity,
        timeout_ms=timeout_ms if timeout_ms > 0 else None,
    )


def _step_summaries(summary: SummaryView) -> list[StepView]:
    if summary.steps:
        return list(summary.steps)
    if summary.start_s is not None:
        return [summary]
    return []


def _step_batches(batches: pd.DataFrame | None, rows: pd.DataFrame) -> pd.DataFrame | None:
    if batches is None or rows.empty:
        return None
    first_s = float(rows["sent_s"].min()) - _BATCH_SLACK_S
    done_s = (rows["sent_s"] + rows["latency_ms"].fillna(0.0) / 1000.0).max()
    last_s = float(done_s) + _BATCH_SLACK_S
    inside = (batches["start_s"] >= first_s) & (batches["start_s"] <= last_s)
    return batches[inside].reset_index(drop=True)


def read_run_folder(run_dir: Path | str, server: ServerSettings | None = None) -> list[LoadPoint]:
    """The load points of one run folder. `server` (from flags) overrides what the manifest says;
    a folder whose target did not report its settings needs it for anything that replays it."""
    run_dir = Path(run_dir)
    _check_complete(run_dir)
    view, manifest = read_manifest(run_dir / "manifest.json")
    summary = read_summary(run_dir / "summary.json")
    if summary.status == "running":
        raise CapsimInputError(f"summary.json says the load test is still running (or was killed); run "
                               f"`capsim loadtest-finalize {run_dir}` first", source=str(run_dir))
    settings = view.settings
    warmup_s = settings.warmup_s if settings.warmup_s is not None else summary.warmup_s
    duration_s = settings.duration_s if settings.duration_s is not None else summary.duration_s
    if warmup_s is None or duration_s is None:
        raise CapsimInputError("no warmup_s / duration_s in settings", source=str(run_dir / "manifest.json"))
    requests = read_parquet_file(run_dir / "requests.parquet", REQUEST_COLUMNS, OPTIONAL_REQUEST_COLUMNS)
    if requests.empty:
        raise CapsimInputError("no requests recorded (0 rows)", source=str(run_dir / "requests.parquet"))
    # Only inference requests (records.request_kind: the v2 infer route, /predict/MODEL or a name marked
    # with --inference-name) are fitted: health checks and other requests of a custom locustfile would
    # put the client's overhead and a cheap route's latency into the model's service time.
    if "kind" in requests.columns:  # folders written before the column held inference requests only
        kept = requests["kind"].isna() | (requests["kind"] == INFERENCE)
        if not kept.any():
            raise CapsimInputError(f"no inference request among {len(requests)} rows (every kind is 'other'): "
                                   "rerun with --inference-name NAME for your locustfile's inference requests",
                                   source=str(run_dir / "requests.parquet"), field="kind")
        requests = requests[kept].reset_index(drop=True)
    if "step" not in requests.columns:
        requests = requests.assign(step=0)
    batches = None
    if (run_dir / "batches.parquet").exists():  # (optional: a black-box target has no batch log)
        batches = read_parquet_file(run_dir / "batches.parquet", BATCH_COLUMNS)
    model = (view.target.model if view.target is not None else None) or summary.model
    server = server or settings_from_manifest(view)
    steps = _step_summaries(summary)
    if not steps:
        raise CapsimInputError("no step with a start time (start_s); was the run interrupted before it began?",
                               source=str(run_dir / "summary.json"))
    points = []
    for i, step in enumerate(steps):
        if step.start_s is None:
            raise CapsimInputError("no start_s (when the step began)", source=str(run_dir / "summary.json"),
                                   field=f"steps[{i}].start_s" if summary.steps else "start_s")  # fmt: skip
        rows = requests[requests["step"] == step.step].sort_values("sent_s", kind="stable").reset_index(drop=True)
        if rows.empty:
            continue
        point = LoadPoint(
            run_dir=run_dir, step=step.step, steps_in_run=len(steps), rate_rps=step.rate_rps, model=model,
            start_s=step.start_s, warmup_s=warmup_s, duration_s=duration_s, requests=rows,
            batches=_step_batches(batches, rows), server=server, manifest=manifest,
            valid=step.valid and not step.partial,
            invalid_reasons=list(step.invalid_reasons) + (["interrupted"] if step.partial else []),
        )
        if not point.measured_mask().any():
            continue
        points.append(point)
    if not points:
        raise CapsimInputError("no request falls in a measured interval (after the warm-up)",
                               source=str(run_dir / "requests.parquet"))
    if points[0].rate_rps is None:
        for point in points:  # a single-rate run: its rate is in the settings
            point.rate_rps = settings.arrival.rate_rps if settings.arrival is not None else None
    return points


def read_run_folders(run_dirs: list[Path], server: ServerSettings | None = None) -> list[LoadPoint]:
    """The load points of several run folders, in the order given."""
    if not run_dirs:
        raise CapsimInputError("give at least one run folder", field="RUN_DIR")
    points: list[LoadPoint] = []
    for run_dir in run_dirs:
        points.extend(read_run_folder(run_dir, server))
    return points


def require_server(point: LoadPoint) -> ServerSettings:
    """The point's server settings, or a clear error saying which flags supply them."""
    if point.server is None:
        raise CapsimInputError(
            "the run folder does not say how the server batched (its target did not report /debug/config): "
            "give --max-batch-size and --max-wait-ms (and --instances, --queue-capacity, --timeout-ms if set)",
            source=str(point.run_dir))
    return point.server

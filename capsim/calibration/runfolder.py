"""Reading a load-test run folder (written by `capsim loadtest`) into load points for calibration.

A *load point* is one step of a run: one offered load against one server configuration. A plain run
has one step, a sweep one per rate. Each point carries its request rows, the reference server's
batches that served them (when the run has `batches.parquet`), the server's batching settings (from
`manifest.json` when the target reported them, else from flags) and the measured interval.

Every problem with a folder is a `CapsimInputError` naming the folder, the file and what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from capsim.errors import CapsimInputError

REQUIRED_FILES = ("manifest.json", "summary.json", "requests.parquet")
REQUEST_COLUMNS = ("intended_s", "sent_s", "latency_ms", "status")
# The load tester's `kind` of a request that runs the model (capsim.loadtest.records.request_kind:
# the v2 infer route, /predict/MODEL, or a name marked with --inference-name). Health checks and
# other requests of a custom locustfile are `other`: fitting them would put the client's overhead
# and a cheap route's latency into the model's service time.
INFERENCE_KIND = "inference"
BATCH_COLUMNS = ("size", "start_s", "end_s")
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CapsimInputError(f"cannot read it as JSON ({exc})".splitlines()[0], source=str(path)) from None
    if not isinstance(data, dict):
        raise CapsimInputError("expected a JSON object", source=str(path))
    return data


def _read_parquet(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several kinds; the user needs one line
        raise CapsimInputError(f"cannot read parquet ({exc})".splitlines()[0], source=str(path)) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise CapsimInputError(f"missing column(s) {', '.join(missing)}; was it written by capsim loadtest?",
                               source=str(path))
    return frame


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


def settings_from_manifest(manifest: dict[str, Any]) -> ServerSettings | None:
    """The reference server's batching settings as its `/debug/config` reported them, if recorded."""
    reported = (manifest.get("target") or {}).get("server_config") or {}
    config = reported.get("config") if isinstance(reported, dict) else None
    if not isinstance(config, dict) or "max_batch_size" not in config:
        return None
    timeout_ms = float(config.get("timeout_ms") or 0.0)
    return ServerSettings(
        max_batch_size=int(config["max_batch_size"]),
        max_wait_ms=float(config.get("max_wait_ms", 0.0)),
        instances=int(config.get("instances", 1)),
        queue_capacity=int(config["queue_capacity"]) if config.get("queue_capacity") is not None else None,
        timeout_ms=timeout_ms if timeout_ms > 0 else None,
    )


def _step_summaries(summary: dict[str, Any]) -> list[dict[str, Any]]:
    steps = summary.get("steps")
    if isinstance(steps, list) and steps:
        return steps
    if "start_s" in summary:
        return [{**summary, "step": summary.get("step", 0)}]
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
    manifest = _read_json(run_dir / "manifest.json")
    summary = _read_json(run_dir / "summary.json")
    if summary.get("status") == "running":
        raise CapsimInputError(f"summary.json says the load test is still running (or was killed); run "
                               f"`capsim loadtest-finalize {run_dir}` first", source=str(run_dir))
    settings = manifest.get("settings") or {}
    try:
        warmup_s = float(settings.get("warmup_s", summary.get("warmup_s")))  # type: ignore[arg-type]
        duration_s = float(settings.get("duration_s", summary.get("duration_s")))  # type: ignore[arg-type]
    except (TypeError, ValueError):  # absent (None) or not a number
        raise CapsimInputError("no warmup_s / duration_s in settings", source=str(run_dir / "manifest.json")) from None
    requests = _read_parquet(run_dir / "requests.parquet", REQUEST_COLUMNS)
    if requests.empty:
        raise CapsimInputError("no requests recorded (0 rows)", source=str(run_dir / "requests.parquet"))
    if "kind" in requests.columns:  # folders written before the column held inference requests only
        kept = requests["kind"].isna() | (requests["kind"] == INFERENCE_KIND)
        if not kept.any():
            raise CapsimInputError(f"no inference request among {len(requests)} rows (every kind is 'other'): "
                                   "rerun with --inference-name NAME for your locustfile's inference requests",
                                   source=str(run_dir / "requests.parquet"), field="kind")
        requests = requests[kept].reset_index(drop=True)
    if "step" not in requests.columns:
        requests = requests.assign(step=0)
    batches = None
    if (run_dir / "batches.parquet").is_file():
        batches = _read_parquet(run_dir / "batches.parquet", BATCH_COLUMNS)
    model = (manifest.get("target") or {}).get("model") or summary.get("model")
    server = server or settings_from_manifest(manifest)
    steps = _step_summaries(summary)
    if not steps:
        raise CapsimInputError("no step with a start time (start_s); was the run interrupted before it began?",
                               source=str(run_dir / "summary.json"))
    points = []
    for step in steps:
        number = int(step.get("step", 0))
        rows = requests[requests["step"] == number].sort_values("sent_s", kind="stable").reset_index(drop=True)
        if rows.empty:
            continue
        point = LoadPoint(
            run_dir=run_dir, step=number, steps_in_run=len(steps), rate_rps=step.get("rate_rps"), model=model,
            start_s=float(step["start_s"]), warmup_s=warmup_s, duration_s=duration_s, requests=rows,
            batches=_step_batches(batches, rows), server=server, manifest=manifest,
            valid=bool(step.get("valid", True)) and not step.get("partial", False),
            invalid_reasons=list(step.get("invalid_reasons") or []) + (["interrupted"] if step.get("partial") else []),
        )
        if not point.measured_mask().any():
            continue
        points.append(point)
    if not points:
        raise CapsimInputError("no request falls in a measured interval (after the warm-up)",
                               source=str(run_dir / "requests.parquet"))
    if points[0].rate_rps is None:
        for point in points:  # a single-rate run: its rate is in the settings
            point.rate_rps = (settings.get("arrival") or {}).get("rate_rps")
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

"""LLM run folders (`capsim loadtest --protocol openai`) as load points for LLM calibration.

An LLM load point is a load point of runfolder.py (one step: one offered load against one engine
configuration) plus what an LLM replay needs:

* the engine's scheduler settings, as an `LlmScheduler` (capsim/serving/llm/spec.py, vLLM's names):
  from the manifest's `target.server_config.config` when the target reported them (the reference
  LLM server's `GET /debug/config`: `max_num_seqs`, `max_num_batched_tokens`,
  `enable_chunked_prefill`, `block_size`, `num_gpu_blocks`, `enable_prefix_caching`,
  `max_model_len`), else from `--scheduler key=value,...` (a vLLM, SGLang or TGI deployment reports
  none); the flag overrides what the manifest says;
* per request, the prompt and output tokens it had: the counts the server reported in `usage`
  (`input_tokens`, `output_tokens`), else the counts the load tester asked for;
* the engine's per-step log for the point's time span, when there is one (llm_steplog.py).

Every problem is one line naming the folder, the file or the flag (CapsimInputError).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from capsim.calibration.llm_steplog import find_step_log, read_step_log, steps_for
from capsim.calibration.runfolder import LoadPoint, read_run_folder
from capsim.errors import CapsimInputError
from capsim.input_files import read_json_file
from capsim.serving.llm.spec import LlmScheduler

LLM_REQUEST_COLUMNS = ("requested_input_tokens", "requested_output_tokens", "ttft_ms", "itl_ms")
# The reference LLM server's /debug/config names → serving.scheduler's (vLLM's engine arguments).
_MANIFEST_NAMES = {"max_num_seqs": "max_num_seqs", "max_num_batched_tokens": "max_num_batched_tokens",
                   "enable_chunked_prefill": "chunked_prefill", "block_size": "block_size",
                   "num_gpu_blocks": "kv_cache_blocks", "enable_prefix_caching": "enable_prefix_caching",
                   "max_model_len": "max_model_len"}  # fmt: skip


def scheduler_key(scheduler: LlmScheduler) -> str:
    """A short label of an engine configuration (groups load levels for --holdout):
    `s<max_num_seqs>-t<max_num_batched_tokens>-cp` (chunked prefill) or `-nocp`."""
    return (f"s{scheduler.max_num_seqs}-t{scheduler.max_num_batched_tokens}-"
            f"{'cp' if scheduler.chunked_prefill else 'nocp'}")  # fmt: skip


@dataclass
class LlmPoint:
    """One step of an LLM run folder, with its engine settings, token counts and step log."""

    point: LoadPoint
    scheduler: LlmScheduler
    steps: pd.DataFrame | None

    @property
    def label(self) -> str:
        """The load point's label (`folder` or `folder#step`)."""
        return self.point.label

    @property
    def config_key(self) -> str:
        """The engine configuration's label (`scheduler_key`)."""
        return scheduler_key(self.scheduler)

    def token_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) tokens per request row: as the server reported them, else as asked for."""
        rows = self.point.requests

        def side(reported: str, asked: str) -> np.ndarray:
            asked_n = rows[asked].to_numpy(dtype=float)
            got = rows[reported].to_numpy(dtype=float) if reported in rows.columns else np.full(len(rows), np.nan)
            return np.where(np.isfinite(got) & (got >= 1), got, asked_n)

        return side("input_tokens", "requested_input_tokens"), side("output_tokens", "requested_output_tokens")


def is_llm_run(run_dir: Path) -> bool:
    """Whether a run folder holds streamed LLM requests (`capsim loadtest --protocol openai`):
    its manifest says so, or its request table has token counts."""
    manifest = run_dir / "manifest.json"
    if manifest.is_file():
        try:
            data = read_json_file(manifest)
        except CapsimInputError:
            return False
        settings = data.get("settings") if isinstance(data, dict) else None
        if isinstance(settings, dict) and settings.get("protocol") == "openai":
            return True
    requests = run_dir / "requests.parquet"
    if requests.is_file():
        import pyarrow.parquet as pq

        try:
            if "requested_output_tokens" not in pq.read_schema(requests).names:
                return False
            column = pq.read_table(requests, columns=["requested_output_tokens"]).column(0)
        except (OSError, ValueError):
            return False
        return column.null_count < len(column)  # a folder of other requests may carry the column, all null
    return False


def parse_scheduler_flag(text: str | None) -> dict[str, Any]:
    """`--scheduler max_num_seqs=256,max_num_batched_tokens=2048,...` as a mapping (values parsed as
    JSON scalars: numbers, true/false)."""
    if not text:
        return {}
    import json

    out: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise CapsimInputError(f"expected key=value pairs separated by commas, got {part!r}", field="--scheduler")
        try:
            out[name.strip()] = json.loads(value.strip())
        except ValueError:
            out[name.strip()] = value.strip()
    return out


def _scheduler(point: LoadPoint, overrides: dict[str, Any]) -> LlmScheduler:
    reported = ((point.manifest.get("target") or {}).get("server_config") or {}).get("config") or {}
    values = {ours: reported[theirs] for theirs, ours in _MANIFEST_NAMES.items() if reported.get(theirs) is not None}
    values.update(overrides)
    source = "--scheduler" if overrides else str(point.run_dir / "manifest.json")
    try:
        scheduler = LlmScheduler.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "scheduler"
        raise CapsimInputError(f"{where}: {first['msg']}", source=source) from None
    missing = [name for name in ("max_num_seqs", "max_num_batched_tokens", "kv_cache_blocks")
               if getattr(scheduler, name) is None]  # fmt: skip
    if missing:
        raise CapsimInputError(f"the run does not say how the engine scheduled ({', '.join(missing)} unknown: its "
                               "target did not report /debug/config); give --scheduler "
                               "max_num_seqs=N,max_num_batched_tokens=N,kv_cache_blocks=N[,chunked_prefill=true,...]",
                               source=str(point.run_dir))  # fmt: skip
    if scheduler.max_model_len is None:
        # The server accepted every request, so its context holds the longest one seen.
        longest = point.requests["requested_input_tokens"] + point.requests["requested_output_tokens"]
        scheduler = scheduler.model_copy(update={"max_model_len": max(int(longest.max()), 2)})
    return scheduler


def read_llm_points(run_dirs: list[Path], scheduler_flag: str | None = None,
                    step_log: Path | None = None) -> list[LlmPoint]:  # fmt: skip
    """The LLM load points of `run_dirs`. `step_log`: the engine's per-step log (the server's
    `--step-log` file), else each folder's own `steps.jsonl` / `steps.parquet` if present."""
    if not run_dirs:
        raise CapsimInputError("give at least one run folder", field="RUN_DIR")
    overrides = parse_scheduler_flag(scheduler_flag)
    shared = read_step_log(step_log) if step_log is not None else None
    points: list[LlmPoint] = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        loaded = read_run_folder(run_dir)
        missing = [c for c in LLM_REQUEST_COLUMNS if c not in loaded[0].requests.columns]
        if missing or loaded[0].requests["requested_output_tokens"].isna().all():
            raise CapsimInputError("not an LLM run: requests.parquet has no token counts (requested_output_tokens; "
                                   "write it with capsim loadtest --protocol openai)",
                                   source=str(run_dir / "requests.parquet"))  # fmt: skip
        own = shared
        if own is None:
            found = find_step_log(run_dir)
            own = read_step_log(found) if found is not None else None
        for point in loaded:
            points.append(LlmPoint(point, _scheduler(point, overrides), steps_for(own, point)))
    return points


def common_llm_model(points: list[LlmPoint]) -> str:
    """The one model all points measured (an error naming the runs when they disagree)."""
    from capsim.calibration.provenance import common_model

    return common_model([p.point for p in points]) or "unknown"

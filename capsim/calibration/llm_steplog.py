"""An LLM engine's per-step log, as white-box LLM calibration reads it.

The reference LLM server writes one JSON record per engine step (`--step-log FILE`, JSON lines;
reference_server/llm/steplog.py), and serves the same records at `GET /debug/steps`. Calibration
takes it from `--step-log FILE`, or from the run folder's own `steps.jsonl` (the server's file
copied in) or `steps.parquet`. Columns used (others are ignored):

| column | meaning |
|---|---|
| `start_s`, `end_s` | the step's start and end, epoch seconds (the load generator's clock on loopback) |
| `duration_ms` | the step's duration from a monotonic clock (else `end_s − start_s`) |
| `prefill_tokens` | prompt tokens processed (T) |
| `decode_seqs` | sequences decoding one token (D) |
| `context_tokens` | KV tokens attended, summed over the scheduled sequences (C) |
| `new_seqs` | requests scheduled for the first time (N) |
| `preempted` | sequences preempted while scheduling the step (optional) |

A step belongs to the load point whose requests were in flight when it started (steps of a sweep
are sequential, so their spans never overlap), as batches do in runfolder.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from capsim.calibration.runfolder import LoadPoint
from capsim.errors import CapsimInputError

STEP_COLUMNS = ("start_s", "end_s", "prefill_tokens", "decode_seqs", "context_tokens", "new_seqs")
STEP_LOG_NAMES = ("steps.jsonl", "steps.parquet")
_SLACK_S = 0.5  # the network hop between a client's send and the server's first step for it


def find_step_log(run_dir: Path) -> Path | None:
    """The run folder's own step log (`steps.jsonl` or `steps.parquet`), or None."""
    for name in STEP_LOG_NAMES:
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def _read_jsonl(path: Path) -> pd.DataFrame:
    import orjson

    records = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                if number > 1 and not line.endswith(b"\n"):  # the last line of a log cut mid-write
                    break
                raise CapsimInputError(f"line {number} is not JSON", source=str(path)) from None
            if not isinstance(record, dict):
                raise CapsimInputError(f"line {number}: expected a JSON object per step", source=str(path))
            records.append({k: record.get(k) for k in (*STEP_COLUMNS, "duration_ms", "preempted")})
    return pd.DataFrame.from_records(records, columns=[*STEP_COLUMNS, "duration_ms", "preempted"])


def read_step_log(path: Path) -> pd.DataFrame:
    """The step log at `path` (JSON lines or parquet) with the columns of the module docstring, in
    start order, `duration_s` added; one-line errors naming the file."""
    if not path.is_file():
        raise CapsimInputError("step log not found (expected the server's --step-log file: JSON lines or parquet)",
                               source=str(path))  # fmt: skip
    if path.suffix == ".parquet":
        from capsim.input_tables import read_parquet_file

        frame = read_parquet_file(path, dict.fromkeys(STEP_COLUMNS, "number"))
    else:
        frame = _read_jsonl(path)
    if frame.empty:
        raise CapsimInputError("the step log holds no step", source=str(path))
    for column in STEP_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0]) + 1
            raise CapsimInputError(f"step {row}: {column} missing or not a number", source=str(path))
        frame[column] = values.astype(float)
    wall_s = frame["end_s"] - frame["start_s"]
    if "duration_ms" in frame:  # the monotonic clock's figure where the log has it
        frame["duration_s"] = pd.to_numeric(frame["duration_ms"], errors="coerce").fillna(wall_s * 1e3) / 1e3
    else:
        frame["duration_s"] = wall_s
    if (frame["duration_s"] < 0).any():
        raise CapsimInputError("a step ends before it starts (end_s < start_s)", source=str(path))
    if "preempted" in frame:
        frame["preempted"] = pd.to_numeric(frame["preempted"], errors="coerce").fillna(0.0)
    return frame.sort_values("start_s", kind="stable").reset_index(drop=True)


def steps_for(steps: pd.DataFrame | None, point: LoadPoint) -> pd.DataFrame | None:
    """The steps that started while `point`'s requests were in flight (None without a log or when
    none did)."""
    if steps is None:
        return None
    rows = point.requests
    first_s = float(rows["sent_s"].min()) - _SLACK_S
    last_s = float((rows["sent_s"] + rows["latency_ms"].fillna(0.0) / 1000.0).max()) + _SLACK_S
    inside = steps[(steps["start_s"] >= first_s) & (steps["start_s"] <= last_s)].reset_index(drop=True)
    return inside if not inside.empty else None

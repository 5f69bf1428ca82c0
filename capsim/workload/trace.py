"""Replay of recorded arrival timestamps from a CSV or Parquet file."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field

from capsim.errors import CapsimInputError
from capsim.workload.base import DEFAULT_CHUNK, ArrivalProcess

if TYPE_CHECKING:
    import pandas as pd

TIME_COLUMN_GUESSES = ("timestamp", "time_s", "arrival_s", "time", "ts")
UNIT_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd  # deferred: only trace replay needs it, and it slows every CLI start

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt", ".gz"):
        return pd.read_csv(path)
    raise CapsimInputError(f"expected a .csv or .parquet file, got '{path.suffix}'", source=str(path))


@lru_cache(maxsize=4)
def load_trace_table(path_str: str, mtime_ns: int) -> pd.DataFrame:
    """The trace file as a frame, in file order. Cached by (path, modification time)."""
    try:
        table = _read_table(Path(path_str))
    except CapsimInputError:
        raise
    except Exception as exc:  # pandas raises many kinds; the user needs one line
        raise CapsimInputError(f"cannot read trace: {exc}".splitlines()[0], source=path_str) from None
    if table.empty:
        raise CapsimInputError("trace has no rows", source=path_str)
    return table


@lru_cache(maxsize=8)
def load_trace_offsets_s(path_str: str, mtime_ns: int, column: str | None, unit: str) -> np.ndarray:
    """Seconds since the first arrival, sorted. Cached by (path, modification time)."""
    # Logs are often a little out of order (several writers); replay in time order.
    return np.sort(trace_offsets_in_file_order(path_str, mtime_ns, column, unit))


def trace_offsets_in_file_order(path_str: str, mtime_ns: int, column: str | None, unit: str) -> np.ndarray:
    """Seconds since the first arrival, one per row in file order (the replay sorts them; readers of
    the trace's other columns use the same order, `np.argsort(..., kind="stable")`)."""
    import pandas as pd

    field = "workload.arrival"
    table = load_trace_table(path_str, mtime_ns)
    if column is None:
        lowered = {c.lower(): c for c in table.columns}
        column = next((lowered[g] for g in TIME_COLUMN_GUESSES if g in lowered), table.columns[0])
    if column not in table.columns:
        raise CapsimInputError(
            f"no column '{column}' (columns: {', '.join(map(str, table.columns))})",
            source=path_str,
            field=f"{field}.time_column",
        )
    raw = table[column]
    try:
        if unit == "datetime" or (unit == "auto" and not pd.api.types.is_numeric_dtype(raw)):
            with warnings.catch_warnings():
                # Non-ISO stamps fall back to per-element parsing; that is fine, just slower.
                warnings.simplefilter("ignore", UserWarning)
                stamps = pd.to_datetime(raw, errors="raise")
            offsets = (stamps - stamps.min()).dt.total_seconds().to_numpy(dtype=float)
        else:
            values = pd.to_numeric(raw, errors="raise").to_numpy(dtype=float)
            finite = np.isfinite(values)
            first = float(values[finite].min()) if finite.any() else 0.0  # inf or 1e400 rows: refused below
            offsets = np.where(finite, values - first, np.nan) * UNIT_SECONDS["s" if unit == "auto" else unit]
    except (ValueError, TypeError) as exc:
        msg = f"column '{column}' holds values that are not timestamps ({str(exc).splitlines()[0]})"
        raise CapsimInputError(msg, source=path_str, field=f"{field}.time_column") from None
    if not np.all(np.isfinite(offsets)):
        bad = int(np.flatnonzero(~np.isfinite(offsets))[0])
        raise CapsimInputError(
            f"row {bad + 2}: empty or invalid timestamp in column '{column}'",
            source=path_str,
            field=f"{field}.time_column",
        )
    if offsets.size > 1 and not offsets.max() > 0:  # a replay's loop and mean rate need a span of time
        raise CapsimInputError(f"all {offsets.size} timestamps in column '{column}' are equal: a trace must span "
                               "some time", source=path_str, field=f"{field}.time_column")  # fmt: skip
    return offsets


class TraceArrival(ArrivalProcess):
    """Arrivals at the timestamps of a recorded trace (CSV or Parquet), shifted to start at 0.

    `rate_scale` > 1 compresses time (2.0 replays the same requests twice as fast); `loop` repeats
    the trace back to back until the run ends.
    """

    kind: Literal["trace"] = "trace"
    path: str
    time_column: str | None = None
    time_unit: Literal["auto", "s", "ms", "us", "ns", "datetime"] = "auto"
    rate_scale: float = Field(default=1.0, gt=0)
    skip_s: float = Field(default=0.0, ge=0, description="start replay this far into the trace")
    loop: bool = False

    def resolve_paths(self, base_dir: Path) -> TraceArrival:
        path = Path(self.path)
        if path.is_absolute():
            return self
        return self.model_copy(update={"path": str(base_dir / path)})

    def offsets_s(self) -> np.ndarray:
        """Replay times in seconds from 0, after skipping and rate scaling (one pass of the trace)."""
        path = Path(self.path)
        if not path.is_file():
            raise CapsimInputError("trace file not found", source=self.path, field="workload.arrival.path")
        raw = load_trace_offsets_s(str(path), path.stat().st_mtime_ns, self.time_column, self.time_unit)
        kept = raw[raw >= self.skip_s] - self.skip_s
        return kept / self.rate_scale

    def _span_s(self, offsets: np.ndarray) -> float:
        # One loop lasts the trace span plus one mean gap, so the seam looks like the rest.
        if offsets.size < 2:
            return 1.0
        return float(offsets[-1] + (offsets[-1] - offsets[0]) / (offsets.size - 1))

    def chunks(
        self, rng: np.random.Generator, duration_s: float, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[np.ndarray]:
        offsets = self.offsets_s()
        span_s = self._span_s(offsets)
        shift = 0.0
        while shift < duration_s:
            for first in range(0, offsets.size, chunk):
                times = offsets[first : first + chunk] + shift
                inside = times[times < duration_s]
                if inside.size:
                    yield inside
                if inside.size < times.size:
                    return
            if not self.loop:
                return
            shift += span_s

    def mean_rate_rps(self, duration_s: float) -> float:
        offsets = self.offsets_s()
        if self.loop:
            return offsets.size / self._span_s(offsets)
        return float(np.count_nonzero(offsets < duration_s)) / duration_s if duration_s > 0 else 0.0

    def peak_rate_rps(self, duration_s: float) -> float:
        offsets = self.offsets_s()
        offsets = offsets[offsets < duration_s]
        if offsets.size == 0:
            return 0.0
        # Counted per minute that has arrivals (not bincount, whose array spans every minute up to the
        # last offset: a trace slowed by rate_scale 1e-9 would ask for 124 GiB).
        _, per_minute = np.unique(offsets // 60.0, return_counts=True)
        return float(per_minute.max()) / 60.0

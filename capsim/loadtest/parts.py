"""Files of a run folder written piece by piece, so that an interrupted run still leaves data.

Workers' rows arrive as numbered part files (`parts/step-XX/requests-wNNN-SEQ.parquet`), each written
to a temporary name and renamed into place (`os.replace` is atomic on POSIX): a reader sees whole
parts or nothing, whatever moment the run is killed. At the end the parts are merged into one
`requests.parquet`, sorted by intended send time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from capsim.atomic import atomic_write, atomic_write_json
from capsim.loadtest.records import REQUEST_SCHEMA


def write_json_atomic(path: Path, data: Any) -> None:
    """Write `data` as indented JSON via a temporary file and an atomic rename (user's umask)."""
    atomic_write_json(path, data)


def write_table_atomic(path: Path, table: pa.Table) -> None:
    """Write a parquet file via a temporary file and an atomic rename (user's umask)."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def request_part_path(parts_dir: Path, worker: int, seq: int) -> Path:
    """Where part number `seq` of `worker`'s rows goes."""
    return parts_dir / f"requests-w{worker:03d}-{seq:06d}.parquet"


def write_request_part(parts_dir: Path, worker: int, seq: int, rows: dict[str, list[Any]]) -> Path | None:
    """Write one batch of request rows (columns as lists); returns the path, or None when empty."""
    if not rows or not rows.get("intended_s"):
        return None
    # A column the sender did not fill (a remote worker of an older capsim) is null, not fatal.
    n = len(rows["intended_s"])
    rows = {name: rows.get(name, [None] * n) for name in REQUEST_SCHEMA.names}
    table = pa.Table.from_pydict(rows, schema=REQUEST_SCHEMA)
    path = request_part_path(parts_dir, worker, seq)
    write_table_atomic(path, table)
    return path


def read_tables(paths: list[Path], schema: pa.Schema | None = None) -> pa.Table | None:
    """Concatenate parquet files; unreadable ones (there should be none) are skipped, never fatal."""
    tables = []
    for path in sorted(paths):
        try:
            tables.append(pq.read_table(path))
        except (OSError, pa.ArrowException):
            continue
    if not tables:
        return schema.empty_table() if schema is not None else None
    return pa.concat_tables(tables, promote_options="default")


def read_request_parts(parts_dir: Path) -> pa.Table:
    """All request rows written so far under `parts_dir` (any depth)."""
    table = read_tables(list(parts_dir.rglob("requests-w*.parquet")), REQUEST_SCHEMA)
    assert table is not None
    return table

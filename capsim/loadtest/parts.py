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
from capsim.errors import CapsimInputError
from capsim.input_tables import read_parquet_table
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


def read_tables(
    paths: list[Path], schema: pa.Schema | None = None, damaged: dict[Path, str] | None = None
) -> pa.Table | None:
    """Concatenate parquet files. An unreadable one (a disk that filled, a worker killed mid-write on
    a filesystem without atomic rename) is never fatal: it is left out and, when `damaged` is given,
    recorded there with what is wrong, so that the caller keeps its bytes and names it."""
    tables = []
    for path in sorted(paths):
        try:
            tables.append(_conformed(read_parquet_table(path), schema, path))
        except CapsimInputError as exc:
            if damaged is not None:
                damaged[path] = exc.detail
    if not tables:
        return schema.empty_table() if schema is not None else None
    return pa.concat_tables(tables, promote_options="default")


def _conformed(table: pa.Table, schema: pa.Schema | None, path: Path) -> pa.Table:
    """`table` with each column that `schema` names cast to the schema's type (a column the part
    lacks stays absent: the merge fills it with nulls); one that cannot be cast damages the part."""
    if schema is None:
        return table
    for field in schema:
        i = table.schema.get_field_index(field.name)
        if i < 0 or table.schema.field(i).type == field.type:
            continue
        try:
            table = table.set_column(i, field, table.column(i).cast(field.type))
        except (pa.ArrowException, ValueError):
            raise CapsimInputError(f"column {field.name}: expected {field.type}, got {table.schema.field(i).type}",
                                   source=str(path)) from None  # fmt: skip
    return table


def read_request_parts(parts_dir: Path, damaged: dict[Path, str] | None = None) -> pa.Table:
    """All request rows written so far under `parts_dir` (any depth); unreadable parts go to `damaged`."""
    table = read_tables(list(parts_dir.rglob("requests-w*.parquet")), REQUEST_SCHEMA, damaged)
    assert table is not None
    return table

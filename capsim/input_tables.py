"""Reading people's parquet files (a run folder's requests, batches and telemetry; a load test's
parts): one reader that names the file and what is wrong, in one line.

The companion of `capsim.input_files` (YAML and JSON). Every refusal is a `CapsimInputError`
(exit code 2) whose source is the file:

- missing, a folder, or unreadable: "file not found", "expected a file, found a folder", "cannot read";
- not parquet at all, empty, or cut short: "not a parquet file (empty: 0 bytes)", "not a parquet file,
  or damaged (truncated?): <pyarrow's first line>";
- a column the reader needs is absent: "missing column(s) sent_s (expected intended_s, sent_s, ...)";
- a column holds the wrong kind of value: "column sent_s: expected numbers, got string".

A column whose values are all null has pyarrow's `null` type; it passes any kind (its rows say
"not measured", which the readers handle).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from capsim.errors import CapsimInputError

if TYPE_CHECKING:  # pandas loads only for readers that want a frame (load-test workers write parts without it)
    import pandas as pd

ColumnKind = Literal["number", "integer", "text", "bool", "any"]

_KIND_WORDS: dict[str, str] = {
    "number": "numbers", "integer": "integers", "text": "text", "bool": "true/false values", "any": "values",
}  # fmt: skip


def _is_kind(dtype: pa.DataType, kind: ColumnKind) -> bool:
    if kind == "any" or pa.types.is_null(dtype):
        return True
    if pa.types.is_dictionary(dtype):  # pandas categoricals: judge the values
        dtype = dtype.value_type
    if kind == "number":
        return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    if kind == "integer":
        return pa.types.is_integer(dtype)
    if kind == "text":
        return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)
    return pa.types.is_boolean(dtype)


def check_columns(schema: pa.Schema, columns: Mapping[str, ColumnKind], source: str) -> None:
    """Raise naming `source` when a column of `columns` is absent from `schema` or of another kind."""
    missing = [name for name in columns if name not in schema.names]
    if missing:
        raise CapsimInputError(f"missing column(s) {', '.join(missing)} (expected {', '.join(columns)}; "
                               "was it written by capsim loadtest?)", source=source)  # fmt: skip
    for name, kind in columns.items():
        dtype = schema.field(name).type
        if not _is_kind(dtype, kind):
            raise CapsimInputError(f"column {name}: expected {_KIND_WORDS[kind]}, got {dtype}", source=source)


def read_parquet_table(
    path: Path, columns: Mapping[str, ColumnKind] | None = None, optional: Mapping[str, ColumnKind] | None = None
) -> pa.Table:
    """The parquet file at `path` as an Arrow table, with `columns` (name → kind) required and checked
    and `optional` ones checked where present; other columns are kept as they are. One-line errors
    name the file (see the module docstring)."""
    source = str(path)
    if not path.exists():
        raise CapsimInputError("file not found", source=source)
    if path.is_dir():
        raise CapsimInputError("expected a parquet file, found a folder", source=source)
    try:
        size_bytes = path.stat().st_size
        if size_bytes == 0:
            raise CapsimInputError("not a parquet file (empty: 0 bytes)", source=source)
        table = pq.read_table(path)
    except CapsimInputError:
        raise
    except PermissionError as exc:
        raise CapsimInputError(f"cannot read ({exc.strerror})", source=source) from None
    except (pa.ArrowException, OSError, ValueError, EOFError, IndexError) as exc:
        # pyarrow's messages are long and several lines; the first names the problem (after the path,
        # which the error already names).
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        first = first.split(f"{path}': ", 1)[-1][:200]
        raise CapsimInputError(f"not a parquet file, or damaged (truncated?): {first}", source=source) from None
    if columns:
        check_columns(table.schema, columns, source)
    if optional:
        check_columns(table.schema, {k: v for k, v in optional.items() if k in table.schema.names}, source)
    return table


def read_parquet_file(
    path: Path, columns: Mapping[str, ColumnKind] | None = None, optional: Mapping[str, ColumnKind] | None = None
) -> pd.DataFrame:
    """`read_parquet_table` as a pandas frame."""
    table = read_parquet_table(path, columns, optional)
    try:
        return table.to_pandas()
    except (pa.ArrowException, ValueError, TypeError) as exc:  # e.g. an extension type pandas cannot hold
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CapsimInputError(f"cannot convert its columns: {first}", source=str(path)) from None

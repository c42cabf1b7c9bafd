"""Arrow at the boundaries: accept pandas, polars, Arrow or a file, hand back Arrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lockgate.errors import InvalidInputError, NotFoundError

__all__ = ["read_table", "schema_fields", "to_arrow"]


def to_arrow(data: Any) -> pa.Table:
    """Convert a pandas or polars frame, an Arrow table or record batch, or a dict of columns."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("pandas"):
        if type(data).__name__ == "Series":
            data = data.to_frame()
        return pa.Table.from_pandas(data, preserve_index=False)
    if module.startswith("polars"):
        table: pa.Table = data.to_arrow()
        return table
    if isinstance(data, dict):
        return pa.table(data)
    if isinstance(data, (str, Path)):
        return read_table(data)
    raise InvalidInputError(
        f"cannot use a {type(data).__name__} as a table; pass a pandas or polars DataFrame, an Arrow table or a file path"
    )


def read_table(path: str | Path) -> pa.Table:
    """Read a Parquet, CSV or Arrow IPC file (or a folder of Parquet files)."""
    p = Path(path)
    if not p.exists():
        raise NotFoundError(f"data file {p} does not exist; check the path")
    try:
        if p.is_dir() or p.suffix in (".parquet", ".pq"):
            return pq.read_table(p)
        if p.suffix in (".csv", ".tsv"):
            return pacsv.read_csv(p, parse_options=pacsv.ParseOptions(delimiter="\t" if p.suffix == ".tsv" else ","))
        if p.suffix in (".arrow", ".feather", ".ipc"):
            return pa.ipc.open_file(p).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"cannot read {p} ({exc}); is it a valid {p.suffix.lstrip('.')} file?") from None
    raise InvalidInputError(f"cannot read {p}: unknown file type '{p.suffix}'; use .parquet, .csv or .arrow")


def schema_fields(schema: pa.Schema) -> list[dict[str, Any]]:
    """A JSON-safe description of a schema: name, Arrow type, nullability."""
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]

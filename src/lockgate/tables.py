"""Arrow at the boundaries: accept pandas, polars, Arrow or a file, hand back Arrow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from lockgate.errors import InvalidInputError, NotFoundError

__all__ = ["layout_schema", "layout_type", "read_table", "schema_fields", "to_arrow"]


def to_arrow(data: Any) -> pa.Table:
    """Convert a pandas or polars frame, an Arrow table or record batch, or a dict of columns.

    Column types are made plain where that changes only the layout: pandas and polars hand
    strings over as ``large_string`` or ``string_view``, Arrow builds ``string``, and the same
    data should have one schema whichever way it came in.

    >>> import pandas as pd
    >>> to_arrow(pd.DataFrame({"s": ["a"]})).schema.field("s").type
    DataType(string)
    """
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    else:
        module = type(data).__module__
        if module.startswith("pandas"):
            if type(data).__name__ == "Series":
                data = data.to_frame()
            table = pa.Table.from_pandas(data, preserve_index=False)
        elif module.startswith("polars"):
            table = data.to_arrow()
        elif isinstance(data, dict):
            table = pa.table(data)
        elif isinstance(data, (str, Path)):
            table = read_table(data)
        else:
            raise InvalidInputError(
                f"cannot use a {type(data).__name__} as a table; "
                "pass a pandas or polars DataFrame, an Arrow table or a file path"
            )
    return _plain_types(table)


def layout_type(dtype: pa.DataType, *, large: bool) -> pa.DataType:
    """``dtype`` with every string, binary and list spelled one way: large or plain.

    ``large_string``, ``string_view`` and ``string`` hold the same values in different
    layouts; so do the binary and list families. Nested types are rewritten throughout.
    """
    t = pa.types
    if t.is_string(dtype) or t.is_large_string(dtype) or t.is_string_view(dtype):
        return pa.large_string() if large else pa.string()
    if t.is_binary(dtype) or t.is_large_binary(dtype) or t.is_binary_view(dtype):
        return pa.large_binary() if large else pa.binary()
    if t.is_list(dtype) or t.is_large_list(dtype) or t.is_list_view(dtype) or t.is_large_list_view(dtype):
        item = dtype.value_field.with_type(layout_type(dtype.value_type, large=large))
        return pa.large_list(item) if large else pa.list_(item)
    if t.is_fixed_size_list(dtype):
        item = dtype.value_field.with_type(layout_type(dtype.value_type, large=large))
        return pa.list_(item, dtype.list_size)
    if t.is_struct(dtype):
        return pa.struct([f.with_type(layout_type(f.type, large=large)) for f in dtype])
    if t.is_map(dtype):
        return pa.map_(
            dtype.key_field.with_type(layout_type(dtype.key_type, large=large)),
            dtype.item_field.with_type(layout_type(dtype.item_type, large=large)),
            dtype.keys_sorted,
        )
    return dtype


def layout_schema(schema: pa.Schema, *, large: bool) -> pa.Schema:
    return pa.schema([f.with_type(layout_type(f.type, large=large)) for f in schema], metadata=schema.metadata)


def _plain_types(table: pa.Table) -> pa.Table:
    target = layout_schema(table.schema, large=False)
    if target.equals(table.schema):
        return table
    try:
        return table.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return table  # more than 2 GiB of strings in one chunk: keep the large layout


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

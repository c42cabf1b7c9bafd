"""Rows in, Arrow out: the edge where pandas, polars, Arrow, payloads and files become one
``pa.Table`` for the validator, without copying column data where that can be avoided.

Copies are avoided on purpose: validating a 1,000,000-row frame must not double its memory.
pandas numeric columns and Arrow-backed string columns are handed over as they are; a float
``NaN`` stays a ``NaN`` (the validator counts it as missing, as pandas does), which spares a
scan per column. Layout-only differences are left alone too: ``large_string`` is not cast to
``string`` (the validator accepts both), only ``string_view``, which the compute kernels
cannot read, is cast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from lockgate.errors import InvalidInputError

__all__ = ["as_table", "from_records", "peek_parquet", "read_source"]


def as_table(data: Any, types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """``data`` as an Arrow table; a path or URI is read through :func:`read_source`.

    ``types`` (the contract's column types) only guide row dicts, which carry no types.
    """
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, pa.RecordBatch):
        table = pa.Table.from_batches([data])
    elif isinstance(data, (str, Path)):
        table = read_source(data)
    elif callable(getattr(data, "read", None)) and callable(getattr(data, "fingerprint", None)):
        table = data.read()  # a Source (a SQL query, an S3 prefix) already parsed
    elif callable(getattr(data, "read", None)) and callable(getattr(data, "content_hash", None)):
        table = data.read()  # a pipeline's DataRef
    elif isinstance(data, Mapping):
        table = from_records([data], types)
    elif isinstance(data, Sequence) and not isinstance(data, (bytes, bytearray)):
        table = from_records(data, types)
    else:
        module = type(data).__module__
        if module.startswith("pandas"):
            table = _from_pandas(data.to_frame() if type(data).__name__ == "Series" else data)
        elif module.startswith("polars"):
            frame = data.collect() if hasattr(data, "collect") else data
            table = frame.to_arrow()
        else:
            raise InvalidInputError(
                f"cannot validate a {type(data).__name__}; pass an Arrow table or record batch, "
                "a pandas or polars DataFrame, a list of row dicts, or a file path"
            )
    return _readable(table)


def read_source(uri: str | Path) -> pa.Table:
    """Read a file, folder or URI into Arrow, with a one-sentence error for bad input."""
    # Imported here: the readers (fsspec, pyarrow.dataset) stay out of `import lockgate`.
    from lockgate.data._sources import Source

    table: pa.Table = Source.parse(uri).read()
    return table


def peek_parquet(path: str | Path) -> tuple[pa.Schema, int] | None:
    """The schema and row count of a local Parquet file from its footer, without reading data.

    None for anything else, or when the footer cannot be read: reading the data then gives the
    proper error.
    """
    p = Path(path)
    if "://" in str(path) or p.suffix not in (".parquet", ".pq") or not p.is_file():
        return None
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(p)
        return meta.schema.to_arrow_schema(), meta.num_rows
    except (OSError, pa.ArrowException):
        return None


def from_records(rows: Sequence[Mapping[str, Any]], types: Mapping[str, pa.DataType] | None = None) -> pa.Table:
    """A table from row dicts (a serving payload), typed by ``types`` (the contract's) where the
    values allow.

    JSON has one number type, so ``{"amount": 12}`` must become ``float64`` when the contract
    says so; a value that does not fit keeps its own type and the schema check reports it.
    """
    types = types or {}
    if not rows:
        return pa.schema([pa.field(n, t) for n, t in types.items()]).empty_table()
    first = rows[0]
    if not isinstance(first, Mapping):
        raise InvalidInputError(f"a row must be a mapping of column to value, not a {type(first).__name__}")
    keys = first.keys()
    if all((type(row) is dict or isinstance(row, Mapping)) and row.keys() == keys for row in rows):
        names = [str(k) for k in keys]
    else:
        for row in rows:
            if not isinstance(row, Mapping):
                raise InvalidInputError(f"a row must be a mapping of column to value, not a {type(row).__name__}")
        names = [str(k) for k in dict.fromkeys(key for row in rows for key in row)]
    if all(n in types for n in names):
        # Arrow's own row reader is many times faster than building columns in Python.
        try:
            return pa.Table.from_pylist(list(rows), schema=pa.schema([pa.field(n, types[n]) for n in names]))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass  # some value does not fit its type: build column by column to see which
    columns = {name: _column_from_values([row.get(name) for row in rows], types.get(name), name) for name in names}
    return pa.table(columns)


def _column_from_values(values: list[Any], dtype: pa.DataType | None, name: Any) -> pa.Array:
    if dtype is not None:
        try:
            return pa.array(values, type=dtype)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        raise InvalidInputError(
            f"column {name!r} mixes value types ({', '.join(kinds)}); send one type per column"
        ) from None


def _from_pandas(frame: Any) -> pa.Table:
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidInputError(f"the frame has two columns named {dup!r}; rename one")
    arrays = [_pandas_column(frame.iloc[:, i], name) for i, name in enumerate(names)]
    return pa.table(dict(zip(names, arrays, strict=True)))


def _pandas_column(series: Any, name: str) -> pa.Array | pa.ChunkedArray:
    values = series.array
    dtype = getattr(series.dtype, "kind", "O")
    if hasattr(values, "__arrow_array__"):
        # Arrow-backed strings and pandas' masked dtypes: pandas hands over its Arrow data.
        arrow: pa.Array | pa.ChunkedArray = values.__arrow_array__()
        return arrow
    if dtype in "iufb" and isinstance(series.dtype, np.dtype):
        # Zero-copy; NaN stays NaN and is counted as missing by the checks.
        return pa.array(series.to_numpy(copy=False))
    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        kinds = sorted({type(v).__name__ for v in series.dropna().head(1000)})
        raise InvalidInputError(f"column {name!r} mixes value types ({', '.join(kinds)}); give it one type") from None


_VIEWS = {
    "string_view": pa.large_string(),
    "binary_view": pa.large_binary(),
}


def _readable(table: pa.Table) -> pa.Table:
    """Cast the view layouts the compute kernels cannot read (polars hands strings over as views)."""
    schema = table.schema
    names = schema.names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InvalidInputError(f"the data has two columns named {dup!r}; rename one")
    for i, dtype in enumerate(schema.types):
        if pa.types.is_string_view(dtype) or pa.types.is_binary_view(dtype):
            target = _VIEWS[str(dtype)]
            table = table.set_column(i, schema.field(i).with_type(target), table.column(i).cast(target))
    return table

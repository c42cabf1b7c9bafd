"""Content hashes: bytes, files, JSON documents and Arrow tables.

A table's hash depends on its schema (names and types) and its values, not on how it is
chunked, on pandas index metadata or on the bytes under null slots, so the same data logged
twice is the same dataset, whether it came from pandas, polars, Arrow or a file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lockgate.tables import layout_schema, layout_type

__all__ = [
    "canonical_json",
    "sha256_bytes",
    "sha256_file",
    "sha256_json",
    "sha256_stream",
    "table_hash",
]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: IO[bytes]) -> tuple[str, int]:
    """Hash a stream without loading it whole; returns ``(hexdigest, size)``."""
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return sha256_stream(fh)[0]


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal documents give equal bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def sha256_json(value: Any) -> str:
    return sha256_bytes(canonical_json(value))


def table_hash(table: pa.Table) -> str:
    """Hash an Arrow table by its schema and its values, and nothing else.

    Independent of chunking, schema metadata (pandas' index), which layout holds the values
    (``string`` / ``large_string`` / ``string_view``, ``list`` / ``large_list``) and of the
    bytes Arrow leaves under null slots, which differ between producers: pandas keeps the NaN
    under a null float, Arrow writes zero. The table is read chunk by chunk, never copied whole.

    >>> import pyarrow as pa
    >>> a = pa.table({"s": pa.array(["x", "y"], pa.string()), "f": [1.5, None]})
    >>> b = pa.concat_tables([a.slice(0, 1), a.slice(1)])
    >>> table_hash(a) == table_hash(b)
    True
    >>> strict = pa.table(a.columns, schema=pa.schema([pa.field("s", pa.string(), nullable=False), ("f", pa.float64())]))
    >>> table_hash(strict) == table_hash(a)
    True
    """
    canonical = layout_schema(table.schema, large=True)
    digest = hashlib.sha256(
        canonical_json(
            {
                "rows": table.num_rows,
                # Nullability is a schema declaration, not content: the same values from a
                # non-null Arrow schema and from pandas are the same data set.
                "columns": [[f.name, _type_key(f.type)] for f in canonical],
            }
        )
    )
    for field, column in zip(canonical, table.columns, strict=True):
        node = _Node(field.type)
        for chunk in column.chunks:
            node.feed(chunk)
        digest.update(node.digest())
    return digest.hexdigest()


def _type_key(dtype: pa.DataType) -> str:
    """The type as text, without the names Arrow gives list items ('item', 'element')."""
    t = pa.types
    if t.is_large_list(dtype) or t.is_list(dtype) or t.is_fixed_size_list(dtype):
        item = _type_key(dtype.value_type)
        size = f"[{dtype.list_size}]" if t.is_fixed_size_list(dtype) else ""
        return f"list<{item}>{size}"
    if t.is_map(dtype):
        return f"map<{_type_key(dtype.key_type)}, {_type_key(dtype.item_type)}>"
    if t.is_struct(dtype):
        inner = ", ".join(f"{json.dumps(f.name)}: {_type_key(f.type)}" for f in dtype)
        return f"struct<{inner}>"
    return str(dtype)


class _Node:
    """Hashes one column (or a nested child) from its chunks, so that any chunking of the same
    values feeds the same bytes: validity one byte per row, values with null slots zeroed,
    variable-width data as lengths plus bytes, nested values through child nodes."""

    def __init__(self, dtype: pa.DataType) -> None:
        t = pa.types
        self.type = dtype
        self.rows = 0
        self.valid = hashlib.sha256()
        self.lengths = hashlib.sha256()
        self.values = hashlib.sha256()
        self.children: list[_Node] = []
        self.as_list: pa.DataType | None = None
        self.width = 0
        if t.is_dictionary(dtype):
            self.kind = "dictionary"
            self.children = [_Node(layout_type(dtype.value_type, large=True))]
        elif isinstance(dtype, pa.ExtensionType):
            self.kind = "extension"
            self.children = [_Node(layout_type(dtype.storage_type, large=True))]
        elif t.is_null(dtype):
            self.kind = "null"
        elif t.is_boolean(dtype):
            self.kind = "boolean"
        elif t.is_large_string(dtype) or t.is_large_binary(dtype):
            self.kind = "bytes"
        elif t.is_large_list(dtype):
            self.kind = "list"
            self.children = [_Node(dtype.value_type)]
        elif t.is_fixed_size_list(dtype) or t.is_map(dtype):
            self.kind = "list"
            if t.is_fixed_size_list(dtype):
                value = dtype.value_field
            else:
                value = pa.field("entries", pa.struct([dtype.key_field, dtype.item_field]), nullable=False)
            self.as_list = pa.large_list(value)
            self.children = [_Node(value.type)]
        elif t.is_struct(dtype):
            self.kind = "struct"
            self.children = [_Node(f.type) for f in dtype]
        elif _byte_width(dtype):
            self.kind = "fixed"
            self.width = _byte_width(dtype)
        else:  # unions, run-end encoded, …: exact bytes, so equal only when equally chunked
            self.kind = "ipc"

    def feed(self, arr: pa.Array) -> None:
        if self.kind not in ("dictionary", "extension") and arr.type != self.type:
            arr = arr.cast(self.type)  # the same values in the canonical (large) layout
        n = len(arr)
        self.rows += n
        valid = np.asarray(pc.is_valid(arr)) if arr.null_count else None
        self.valid.update(valid.view(np.uint8).tobytes() if valid is not None else b"\x01" * n)
        if self.kind == "dictionary":
            self.children[0].feed(arr.dictionary_decode())
        elif self.kind == "extension":
            self.children[0].feed(arr.storage)
        elif self.kind == "boolean":
            self.values.update(np.asarray(pc.fill_null(arr, False)).view(np.uint8).tobytes())
        elif self.kind == "bytes":
            filled = pc.fill_null(arr, pa.scalar(b"" if pa.types.is_large_binary(arr.type) else "", arr.type))
            buffers = filled.buffers()
            offsets = np.frombuffer(buffers[1], np.int64, count=n + 1, offset=filled.offset * 8)
            self.lengths.update(np.diff(offsets).tobytes())
            if buffers[2] is not None and offsets[-1] > offsets[0]:
                self.values.update(memoryview(buffers[2])[offsets[0] : offsets[-1]])
        elif self.kind == "list":
            if self.as_list is not None:
                arr = arr.cast(self.as_list)
            lengths = pc.fill_null(pc.list_value_length(arr), 0)
            self.lengths.update(np.asarray(lengths, dtype=np.int64).tobytes())
            self.children[0].feed(arr.flatten())  # values under null lists are left out
        elif self.kind == "struct":
            for child, values in zip(self.children, arr.flatten(), strict=True):
                child.feed(values)  # flatten() carries the struct's nulls into its fields
        elif self.kind == "fixed":
            if n:
                w = self.width
                raw = np.frombuffer(arr.buffers()[1], np.uint8, count=n * w, offset=arr.offset * w).reshape(n, w)
                if valid is not None:
                    raw = raw.copy()
                    raw[~valid] = 0
                self.values.update(raw.tobytes())
        elif self.kind == "ipc":
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, pa.schema([("v", arr.type)])) as writer:
                writer.write_batch(pa.record_batch([arr], names=["v"]))
            self.values.update(sink.getvalue())

    def digest(self) -> bytes:
        out = hashlib.sha256(f"{self.kind}:{self.rows}".encode())
        for part in (self.valid, self.lengths, self.values):
            out.update(part.digest())
        for child in self.children:
            out.update(child.digest())
        return out.digest()


def _byte_width(dtype: pa.DataType) -> int:
    try:
        bits = int(dtype.bit_width)
    except ValueError:
        return 0
    return bits // 8 if bits % 8 == 0 and dtype.num_fields == 0 else 0

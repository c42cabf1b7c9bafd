"""Content hashes: bytes, files, JSON documents and Arrow tables.

A table's hash depends on its schema (names and types) and its values, not on how it is
chunked or on pandas index metadata, so the same data logged twice is the same dataset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from lockgate.tables import layout_schema

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


class _HashingSink:
    """A write-only file that hashes what it is given, so a table is never copied to hash it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def table_hash(table: pa.Table) -> str:
    """Hash an Arrow table by schema and values, independent of chunking, metadata and of
    which layout (``string`` / ``large_string`` / ``string_view``, …) holds the values.

    >>> import pyarrow as pa
    >>> a = pa.table({"s": pa.array(["x", "y"], pa.string())})
    >>> b = pa.concat_tables([a.slice(0, 1), a.slice(1)]).cast(pa.schema([("s", pa.large_string())]))
    >>> table_hash(a) == table_hash(b)
    True
    """
    # The large layouts hold any size, so the cast cannot overflow when chunks are combined.
    canonical = layout_schema(table.schema, large=True).remove_metadata()
    fields = [f.remove_metadata() for f in canonical]
    table = table.cast(pa.schema(fields)).combine_chunks()
    sink = _HashingSink()
    with pa.PythonFile(sink, mode="w") as stream, pa.ipc.new_stream(stream, table.schema) as writer:
        for batch in table.to_batches():
            if batch.num_rows:
                writer.write_batch(batch)
    return sink.digest.hexdigest()

"""DuckDB as the offline engine: a connection set up one way, and view rows streamed into it.

Rows reach DuckDB as a stream of Arrow record batches read from Parquet (local or S3) by a
pyarrow dataset scanner: nothing is materialized on the way, and DuckDB's own operators (the
ASOF join's sort, a window's partitions) hold the only copy. The stream also carries what the
files cannot: each row's position in the view (its *ordinal*, which breaks exact ties), and
times floored to the microsecond.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from lockgate.errors import InvalidInputError, LockgateError, UnavailableError
from lockgate.features._offline_schema import is_aware, to_microseconds

__all__ = ["RowStream", "connect", "quote"]


def quote(name: str) -> str:
    """``name`` as a DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


_DATABASE: tuple[int, Any] | None = None
_DATABASE_LOCK = threading.Lock()


def _database() -> Any:
    """This process's DuckDB database, opened on first use.

    Opening an in-memory database costs about 15 ms, more than a small join; a connection to
    an open one (a cursor) costs microseconds and has its own registrations and settings, so
    threads share the database safely. A forked child opens its own: DuckDB's threads do not
    survive a fork.
    """
    global _DATABASE
    with _DATABASE_LOCK:
        if _DATABASE is None or _DATABASE[0] != os.getpid():
            import duckdb

            # DuckDB creates this folder only when it spills; it is removed at exit in case.
            spill = os.path.join(tempfile.gettempdir(), f"lockgate-duckdb-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            atexit.register(shutil.rmtree, spill, True)
            _DATABASE = (
                os.getpid(),
                duckdb.connect(config={"temp_directory": spill, "preserve_insertion_order": False}),
            )
        return _DATABASE[1]


@contextmanager
def connect() -> Iterator[Any]:
    """A DuckDB connection of its own, on the process's shared in-memory database.

    The session time zone is UTC, so naive and aware timestamps print and compare the same on
    every machine. Insertion order is not preserved (callers restore the order they need
    from a row number), which lets DuckDB stream and spill with less memory. Threads and the
    memory limit are DuckDB's defaults (all cores, 80% of RAM); past the limit DuckDB spills
    to a temporary folder of its own (made only then, removed at exit) instead of the
    ``.tmp`` it would create in the current directory.
    """
    con = _database().cursor()
    try:
        con.execute("SET TimeZone = 'UTC'")
        yield con
    finally:
        con.close()


@dataclass
class RowStream:
    """A dataset's rows as a one-pass Arrow stream for DuckDB.

    ``columns`` are read (with ``filter`` applied by the scanner); ``times`` among them are
    floored to ``timestamp[us]``; ``ordinal`` names an added int64 column numbering the rows
    in dataset order (files in order, rows in file order). A read error raised while DuckDB
    pulls the stream is kept in ``error``: DuckDB reports it as its own, and the caller
    re-raises this one.
    """

    dataset: ds.Dataset
    columns: Sequence[str]
    times: Sequence[str] = ()
    ordinal: str | None = None
    filter: ds.Expression | None = None
    label: str = "the data"
    error: LockgateError | None = field(default=None, init=False)

    def reader(self) -> pa.RecordBatchReader:
        scanner = self.dataset.scanner(columns=list(self.columns), filter=self.filter)
        schema = scanner.projected_schema
        for name in self.times:
            i = schema.get_field_index(name)
            aware = is_aware(schema.field(i).type)
            schema = schema.set(i, pa.field(name, pa.timestamp("us", tz="UTC" if aware else None)))
        if self.ordinal is not None:
            schema = schema.append(pa.field(self.ordinal, pa.int64()))
        return pa.RecordBatchReader.from_batches(schema, self._batches(scanner, schema))

    def _batches(self, scanner: ds.Scanner, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        times = {schema.get_field_index(name) for name in self.times}
        offset = 0
        try:
            for batch in scanner.to_batches():
                n = batch.num_rows
                if not n:
                    continue
                arrays = [
                    to_microseconds(column, aware=is_aware(column.type)) if i in times else column
                    for i, column in enumerate(batch.columns)
                ]
                if self.ordinal is not None:
                    arrays.append(pa.array(np.arange(offset, offset + n, dtype=np.int64)))
                offset += n
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except pa.ArrowInvalid as exc:
            # A value that does not fit its declared type (an int64 past 2**53 read as float64).
            text = " ".join(str(exc).split())
            self.error = InvalidInputError(f"cannot read {self.label}: {text}; fix the data or the declared type")
            raise self.error from None
        except OSError as exc:  # a file gone since it was listed, S3 unreachable mid-read
            text = " ".join(str(exc).split())
            self.error = UnavailableError(f"reading {self.label} failed ({text}); check the files and try again")
            raise self.error from None

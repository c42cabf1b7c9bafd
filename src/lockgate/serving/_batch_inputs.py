"""The Parquet files a batch scoring run reads: found, checked against the model's signature
from their footers alone, fingerprinted, and read in chunks.

Inputs are local files, folders (every file below, names starting with ``.`` or ``_``
skipped, as pyarrow's discovery does), glob patterns (``data/*.parquet``, ``data/**/*.pq``),
or ``s3://bucket/key``, ``s3://bucket/prefix/`` and S3 globs. Every file is checked before
the first row is scored, so a bad file named last still fails before any output is written.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lockgate.artifacts import _backend_errors, _one_line
from lockgate.config import Settings
from lockgate.errors import InvalidInputError, NotFoundError, UnavailableError
from lockgate.hashing import sha256_file
from lockgate.serving._batch import Batch, NumericBatch
from lockgate.serving._signature import Column, Signature

__all__ = ["InputFile", "InputPlan", "model_batch", "plan_inputs", "read_chunks", "resolve_inputs"]

_GLOB_CHARS = frozenset("*?[")
# pyarrow reads a column chunk through a buffer of this size instead of loading it whole: a
# file written as one 10M-row group would otherwise need its whole compressed chunk in memory.
_READ_BUFFER = 8 << 20


@dataclass(frozen=True, slots=True)
class InputFile:
    """One Parquet file: its URI as messages and lineage name it, and how pyarrow reaches it."""

    uri: str
    fs: pafs.FileSystem
    path: str
    settings: Settings | None = None

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def fingerprint(self) -> str:
        """What lineage records: the sha256 of a local file's bytes; for S3 the object's
        size and ETag (what :class:`~lockgate.pipelines.DataRef` records for the same URI)."""
        if not self.is_s3:
            with _guard(self.uri):
                return sha256_file(self.path)
        from lockgate.data._sources import Source  # s3fs and friends: only for S3 inputs

        return Source.parse(self.uri).fingerprint(settings=self.settings)

    def open(self) -> pq.ParquetFile:
        with _guard(self.uri):
            return pq.ParquetFile(self.fs.open_input_file(self.path), buffer_size=_READ_BUFFER)


@dataclass(frozen=True, slots=True)
class InputPlan:
    """Checked inputs: the files, their row counts, and the columns to read from each."""

    files: tuple[InputFile, ...]
    rows: tuple[int, ...]
    columns: tuple[str, ...]
    id_column: str | None
    id_type: pa.DataType | None

    @property
    def total_rows(self) -> int:
        return sum(self.rows)


def resolve_inputs(inputs: Sequence[str | os.PathLike[str]], *, settings: Settings) -> list[InputFile]:
    """The files behind ``inputs``, in order (each pattern's or folder's files sorted), once each."""
    if not inputs:
        raise InvalidInputError("no input given; name Parquet files, folders or globs, e.g. 'data/*.parquet'")
    found: dict[str, InputFile] = {}
    for item in inputs:
        text = os.fspath(item)
        files = _s3_files(text, settings) if text.startswith("s3://") else _local_files(text)
        for f in files:
            found.setdefault(f.uri, f)
    return list(found.values())


def _hidden(rel: str) -> bool:
    return any(part.startswith((".", "_")) for part in PurePosixPath(rel).parts)


def _local_files(text: str) -> list[InputFile]:
    local = pafs.LocalFileSystem()
    raw = os.path.expanduser(text.removeprefix("file://"))
    if _GLOB_CHARS & set(raw):
        matches = sorted(glob.glob(raw, recursive=True))
        paths = [p for m in matches for p in (_walk(Path(m)) if os.path.isdir(m) else [Path(m)])]
        if not paths:
            raise NotFoundError(f"no file matches input {text!r}; check the pattern")
    else:
        path = Path(raw)
        if path.is_dir():
            paths = _walk(path)
            if not paths:
                raise NotFoundError(f"input folder {text} holds no files; put Parquet files in it or fix the path")
        elif path.is_file():
            paths = [path]
        else:
            raise NotFoundError(f"input {text} does not exist; check the path")
    return [InputFile(str(p.resolve()), local, str(p.resolve())) for p in paths]


def _walk(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not _hidden(str(p.relative_to(folder))))


def _s3_files(text: str, settings: Settings) -> list[InputFile]:
    from lockgate.features._offline_files import Location  # s3fs costs an import: only for S3 inputs

    location = Location(s3_endpoint_url=settings.s3_endpoint_url)
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(location.s3fs()))
    key = text[len("s3://") :]
    if _GLOB_CHARS & set(key):
        with _guard(text):
            keys = sorted(k for k in location.s3fs().glob(key) if not _hidden(k.split("/", 1)[-1]))
        if not keys:
            raise NotFoundError(f"no object matches input {text!r}; check the pattern")
        return [InputFile(f"s3://{k}", fs, k, settings) for k in keys]
    files = location.files(text, what="input")
    assert files is not None
    return [InputFile(f"s3://{p}", fs, p, settings) for p in files.paths]


# -- checking ------------------------------------------------------------------------------


def plan_inputs(
    files: Sequence[InputFile], signature: Signature, *, model: str, id_column: str | None = None
) -> InputPlan:
    """Check every file's footer: Parquet, the signature's columns of usable types, the id column."""
    rows: list[int] = []
    id_type: pa.DataType | None = None
    for f in files:
        meta = f.open()
        schema = meta.schema_arrow
        types = {field.name: field.type for field in schema}
        missing = [c.name for c in signature.columns if c.name not in types]
        if missing:
            names = ", ".join(f"'{n}'" for n in missing)
            raise InvalidInputError(
                f"input {f.uri} has no column {names}, which {model} takes; "
                "add the column or score a model trained on this data"
            )
        for col in signature.columns:
            if not _usable(types[col.name], col):
                raise InvalidInputError(
                    f"input {f.uri}: column '{col.name}' is {types[col.name]}, but {model} takes {_wanted(col)}; "
                    "cast the column before scoring"
                )
        if id_column is not None:
            if id_column not in types:
                raise InvalidInputError(
                    f"input {f.uri} has no id column '{id_column}'; pass an id column every input has"
                )
            if id_type is None:
                id_type = types[id_column]
            elif types[id_column] != id_type:
                raise InvalidInputError(
                    f"input {f.uri}: id column '{id_column}' is {types[id_column]}, other inputs' {id_type}; "
                    "give it one type in every file"
                )
        rows.append(meta.metadata.num_rows)
    columns = [*signature.names, *([id_column] if id_column and id_column not in signature.names else [])]
    return InputPlan(tuple(files), tuple(rows), tuple(columns), id_column, id_type)


def _usable(found: pa.DataType, col: Column) -> bool:
    t = pa.types
    if t.is_dictionary(found):
        found = found.value_type
    if col.is_string:
        return bool(t.is_string(found) or t.is_large_string(found) or t.is_string_view(found))
    return bool(t.is_integer(found) or t.is_floating(found) or t.is_boolean(found))


def _wanted(col: Column) -> str:
    return "strings" if col.is_string else f"numbers ({col.type})"


# -- reading -------------------------------------------------------------------------------


def read_chunks(plan: InputPlan, chunk_rows: int) -> Iterator[tuple[int, int, pa.RecordBatch]]:
    """``(file index, first row, batch)`` for every chunk of every file, in order."""
    for index, f in enumerate(plan.files):
        start = 0
        reader = f.open()
        with _guard(f.uri):
            # One row group at a time: iterating a whole file keeps every decoded row group
            # allocated until the end (pyarrow 26: 1.8 GB for the W7 file, against 0.2 GB).
            for group in range(reader.num_row_groups):
                for batch in reader.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=list(plan.columns)):
                    yield index, start, batch
                    start += batch.num_rows
        if start != plan.rows[index]:
            raise InvalidInputError(
                f"input {f.uri} changed while it was scored ({start} rows read, {plan.rows[index]} at the start); "
                "score it again once it is written"
            )


def model_batch(data: pa.RecordBatch | pa.Table, signature: Signature) -> Batch:
    """A runtime's batch from Arrow columns: one float64 ``[N, F]`` matrix filled column by
    column when every input is numeric (what the server builds from JSON), else the columns."""
    if not signature.all_numeric:
        table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
        return pa.table({name: _decoded(table.column(name)) for name in signature.names})
    matrix = np.empty((data.num_rows, len(signature.columns)), dtype=np.float64)
    for i, name in enumerate(signature.names):
        matrix[:, i] = _decoded(data.column(name)).to_numpy(zero_copy_only=False)
    return NumericBatch(matrix, signature.names)


def _decoded(column: Any) -> Any:
    """A dictionary-encoded column (pandas' categories, Hive partitions) as its plain values."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


@contextmanager
def _guard(uri: str) -> Iterator[None]:
    """A read failure as one sentence naming the file."""
    unreachable, backend = _backend_errors()
    try:
        yield
    except FileNotFoundError:
        raise NotFoundError(f"input {uri} does not exist (any more); check the path") from None
    except PermissionError as exc:
        raise InvalidInputError(f"cannot read input {uri} ({_one_line(exc)}); check its permissions") from None
    except unreachable as exc:
        raise UnavailableError(f"cannot reach S3 for input {uri} ({_one_line(exc)}); check that it is up") from None
    except (pa.ArrowException, *backend) as exc:
        if isinstance(exc, OSError) and uri.startswith("s3://") and not isinstance(exc, pa.ArrowException):
            raise UnavailableError(f"reading input {uri} failed ({_one_line(exc)}); check S3 and try again") from None
        detail = _one_line(exc).split(". ", 1)[0]
        raise InvalidInputError(
            f"cannot read input {uri}: it is not a readable Parquet file ({detail}); "
            "batch scoring reads Parquet, so convert or rewrite it"
        ) from None

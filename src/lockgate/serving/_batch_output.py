"""What batch scoring writes: one Parquet file, all or nothing.

One row per input row, in input order, with the column names of the prediction log
(:mod:`lockgate.serving._predlog`), so the same queries read both:

=================  ====================  ===================================================
input_file         string                the input file's URI (without an id column)
row                int64                 the row's position in that file (without an id column)
<id column>        as in the inputs      the ``id_column`` values, when one is given
model              string                registered model name
model_version      int32                 registered model version
label              as the classes        a classifier's predicted label
score              float64               a binary classifier's positive-class probability;
                                         the top probability of a multi-class one
probabilities      list<float64>         every class's probability
prediction         float64               a regressor's prediction
extras             struct<…>             a custom model's other outputs, one field each
=================  ====================  ===================================================

The file is written under a hidden temporary name next to the output and renamed into place
once complete, so a failed run leaves nothing at the output path (and an earlier output
there untouched).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.serving._runtimes import Prediction

__all__ = ["OutputFile", "output_path", "prediction_columns"]

# Chunks are gathered into row groups of about this many rows: one row group per scored chunk
# would make a file of hundreds of tiny groups, which every reader pays for.
_ROW_GROUP_ROWS = 1 << 20


def output_path(output: str | os.PathLike[str]) -> Path:
    """The local path to write, refused early when it cannot be one."""
    text = os.fspath(output)
    if "://" in text and not text.startswith("file://"):
        raise InvalidInputError(
            f"output {text} is not a local path; write the scores to a local .parquet file and copy them from there"
        )
    path = Path(os.path.expanduser(text.removeprefix("file://"))).resolve()
    if path.is_dir():
        raise InvalidInputError(f"output {text} is a folder; name a file, e.g. {Path(text) / 'scores.parquet'}")
    return path


def prediction_columns(prediction: Prediction, *, rows: int) -> dict[str, pa.Array]:
    """A prediction as output columns (``label``, ``score``, ``probabilities``, ``prediction``, ``extras``)."""
    if len(prediction) != rows:
        raise UserCodeError(f"the model returned {len(prediction)} predictions for {rows} rows; return one per row")
    columns: dict[str, pa.Array] = {}
    if prediction.label is not None:
        columns["label"] = pa.array(np.asarray(prediction.label))
    if prediction.probabilities is not None:
        proba = np.asarray(prediction.probabilities, dtype=np.float64)
        columns["score"] = pa.array(proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1))
        columns["probabilities"] = pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), proba.shape[1]).cast(
            pa.list_(pa.float64())
        )
    if prediction.prediction is not None:
        columns["prediction"] = pa.array(np.asarray(prediction.prediction, dtype=np.float64))
    if prediction.extras:
        columns["extras"] = pa.StructArray.from_arrays(
            [_extra(np.asarray(v)) for v in prediction.extras.values()], names=list(prediction.extras)
        )
    return columns


def _extra(values: np.ndarray[Any, Any]) -> pa.Array:
    """An extra output: (N,) as it is, (N, k) as lists."""
    if values.ndim == 1:
        return pa.array(values, from_pandas=True)
    return pa.array(list(values.reshape(len(values), -1)), from_pandas=True)


class OutputFile:
    """Appends tables to ``path``'s temporary twin; :meth:`commit` renames it into place.

    Used as a context manager: leaving it with an exception, or without :meth:`commit`,
    removes the temporary file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
        self._writer: pq.ParquetWriter | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._committed = False

    def __enter__(self) -> OutputFile:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot create the output folder {self.path.parent} ({exc.strerror}); pick a writable place"
            ) from None
        return self

    def write(self, table: pa.Table) -> None:
        if self._pending and table.schema != self._pending[0].schema:
            table = self._conform(table, self._pending[0].schema)
        elif self._writer is not None and table.schema != self._writer.schema:
            table = self._conform(table, self._writer.schema)
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= _ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_rows = [], 0
        if self._writer is None:
            try:
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            except OSError as exc:
                raise InvalidInputError(f"cannot write the output {self.path} ({exc}); pick a writable place") from None
        self._writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.rows += table.num_rows

    @staticmethod
    def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
        try:
            return table.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
            raise UserCodeError(
                f"the model's outputs changed type between chunks ({table.schema.types} after {schema.types}); "
                "return the same output types for every batch"
            ) from None

    def commit(self, *, expected_rows: int) -> None:
        """Finish the file and move it to the output path, if it holds ``expected_rows`` rows."""
        self._flush()
        if self._writer is None or self.rows != expected_rows:
            raise InvalidInputError(
                f"{self.rows} rows were scored of the inputs' {expected_rows}; "
                "check that no input changed meanwhile and score again"
            )
        self._writer.close()
        os.replace(self._tmp, self.path)
        self._committed = True

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._committed:
            if self._writer is not None:
                # The file is removed either way; the error that got here is the one to show.
                with contextlib.suppress(Exception):
                    self._writer.close()
            self._tmp.unlink(missing_ok=True)

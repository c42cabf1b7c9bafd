"""The prediction log: every online prediction, appended off the hot path to Parquet.

A request hands over references to arrays it already has (its input batch and its slice of
the model's answer): no conversion happens on the request's path. A writer thread turns what
gathered into one Arrow table per (deployment, model version, day) and writes it as one file,
every ``flush_seconds`` or ``max_rows`` rows, and once more at shutdown. When the store cannot
keep up (an S3 outage), at most ``max_backlog`` requests wait for it; later ones are counted
in :attr:`PredictionLog.dropped` and logged rather than held until memory runs out.

Layout (Hive partitions, so DuckDB, pyarrow and Spark read it as one table)::

    <root>/deployment=<name>/date=<YYYY-MM-DD>/part-<unix ms>-<pid>-<n>.parquet

One row per scored row, with these columns:

=================  ====================  ===================================================
request_id         string                the request id (also in the ``x-request-id`` header)
row                int32                 the row's position within its request
ts                 timestamp[ms, UTC]    when the request arrived (its answer, less latency_ms)
endpoint           string                ``v2``, ``predict`` or ``job``
role               string                the arm that answered: ``primary``, ``canary`` or
                                         ``challenger``; ``shadow`` for a shadow's copy
                                         (same request_id as the answer the caller got)
model              string                registered model name
model_version      int32                 registered model version
latency_ms         float32               the request's time in the server, parse to response
inputs             struct<…>             the model's input features, one field per signature column,
                                         typed as the signature says (float64 when a value
                                         does not fit that type, e.g. 2.5 for an int64 column);
                                         absent from a shadow's rows scored on the primary's
                                         very inputs (join on request_id)
entities           string (JSON)         the entity row the features were looked up for, or null
label              string | int64 | …    a classifier's predicted label
score              float64               a binary classifier's positive-class probability;
                                         the top probability of a multi-class one
probabilities      list<float64>         every class's probability
prediction         float64               a regressor's prediction
extras             struct<…>             a custom model's other outputs, one field each
                                         (only for a model that returns some)
=================  ====================  ===================================================

``label``, ``score`` and ``probabilities`` appear for classifiers, ``prediction`` for
regressors. The deployment and the day are the partition columns (``deployment``, ``date``).

A file's schema follows its model version's signature; read a deployment across versions
with ``union_by_name``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from lockgate.serving._batch import Batch, NumericBatch, batch_columns, batch_rows
from lockgate.serving._runtimes import Prediction
from lockgate.serving._signature import Signature

__all__ = ["LoggedRequest", "PredictionLog"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request's record as the hot path hands it over (references, not copies).

    ``ts_ms`` is the wall-clock time the answer was ready, ``latency_ms`` the time since the
    request arrived: the log's ``ts`` is their difference.
    """

    request_id: str
    ts_ms: int
    endpoint: str
    deployment: str
    model: str
    version: int
    signature: Signature
    batch: Batch
    prediction: Prediction
    latency_ms: float
    entities: Sequence[dict[str, Any]] | None = None
    role: str = "primary"
    with_inputs: bool = True  # False for a shadow's copy scored on the primary's very rows


class PredictionLog:
    """Append predictions to partitioned Parquet under ``root`` (a folder or ``s3://…``).

    ``write`` is safe from any thread and never blocks on I/O; ``close`` writes what is left.
    ``rows_written``, ``files_written``, ``errors`` (failed file writes) and ``dropped``
    (requests refused past the backlog) count what happened.
    """

    def __init__(
        self,
        root: str,
        *,
        s3_endpoint_url: str | None = None,
        flush_seconds: float = 1.0,
        max_rows: int = 50_000,
        max_backlog: int = 100_000,
    ) -> None:
        from lockgate.features._offline_files import Location  # pyarrow.dataset: only when logging

        self.root = root.rstrip("/")
        self._location = Location(s3_endpoint_url=s3_endpoint_url)
        self._flush_seconds = flush_seconds
        self._max_rows = max_rows
        self._max_backlog = max_backlog
        # A deque, not a queue: appending never wakes the writer. A queue's get() woke it for
        # every request, and each wake-up took the GIL from the event loop (a 140 ms p99 at
        # 5,000 requests/s); the writer now wakes every _BUILD_SECONDS and takes what is there.
        self._pending: deque[LoggedRequest] = deque()
        self._stop = threading.Event()
        self._seq = 0
        self.rows_written = 0
        self.files_written = 0
        self.errors = 0
        self.dropped = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="lockgate-prediction-log", daemon=True)
        self._thread.start()

    def write(self, record: LoggedRequest) -> None:
        if self._closed:
            return
        if len(self._pending) >= self._max_backlog:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                _log.warning(
                    "the prediction log at %s is %d requests behind; %d not logged so far",
                    self.root,
                    self._max_backlog,
                    self.dropped,
                )
            return
        self._pending.append(record)

    def close(self, timeout: float = 30.0) -> None:
        """Write everything handed over so far, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            _log.error("the prediction log at %s did not finish writing within %.0f s", self.root, timeout)

    def _loop(self) -> None:
        # Requests are turned into Arrow every ``_BUILD_SECONDS`` (a few ms of GIL each time)
        # and written as one file per group every ``flush_seconds``: one big conversion a
        # second would hold the GIL for tens of ms and show up in the requests' p99.
        built: dict[tuple[str, str, int, int, bool], list[pa.Table]] = {}
        rows = 0
        deadline = time.monotonic() + self._flush_seconds
        while True:
            stopping = self._stop.wait(_BUILD_SECONDS)
            raw = [self._pending.popleft() for _ in range(len(self._pending))]
            rows += sum(batch_rows(r.batch) for r in raw)
            self._build(raw, built)
            if stopping:
                self._write(built)
                return
            if rows >= self._max_rows or time.monotonic() >= deadline:
                self._write(built)
                built, rows = {}, 0
                deadline = time.monotonic() + self._flush_seconds

    def _build(self, raw: list[LoggedRequest], built: dict[tuple[str, str, int, int, bool], list[pa.Table]]) -> None:
        groups: dict[tuple[str, str, int, int, bool], list[LoggedRequest]] = {}
        for r in raw:
            groups.setdefault((r.deployment, r.model, r.version, r.ts_ms // _DAY_MS, r.with_inputs), []).append(r)
        for key, records in groups.items():
            try:
                built.setdefault(key, []).append(to_table(records))
            except Exception:  # noqa: BLE001 - a bad record must not take the server down: counted and logged
                self.errors += 1
                _log.exception("could not log %d predictions of %s", len(records), key[0])

    def _write(self, built: dict[tuple[str, str, int, int, bool], list[pa.Table]]) -> None:
        for (deployment, _model, _version, day_number, _inputs), tables in built.items():
            day = datetime.fromtimestamp(day_number * _DAY_MS / 1000, UTC).strftime("%Y-%m-%d")
            try:
                files = [pa.concat_tables(tables)] if len(tables) > 1 else tables
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # A chunk logged a value as scored (2.5 sent for an int64 feature) and its types
                # differ from the others': each chunk gets its own file rather than none.
                files = tables
            for table in files:
                try:
                    self._seq += 1
                    name = f"part-{int(time.time() * 1000)}-{os.getpid()}-{self._seq}.parquet"
                    self._location.write_parquet(f"{self.root}/deployment={deployment}/date={day}/{name}", table)
                    self.rows_written += table.num_rows
                    self.files_written += 1
                except Exception:  # noqa: BLE001 - a full disk must not take the server down: counted and logged
                    self.errors += 1
                    _log.exception("could not write %d prediction log rows for %s", table.num_rows, deployment)


_BUILD_SECONDS = 0.05
_DAY_MS = 86_400_000


def to_table(records: Sequence[LoggedRequest]) -> pa.Table:
    """The log rows of requests for one model version, as an Arrow table."""
    # Built column by column with one numpy/Arrow call each: the writer thread shares the GIL
    # with the event loop, and every millisecond spent here in Python is a millisecond added
    # to some request's latency.
    signature = records[0].signature
    counts = [batch_rows(r.batch) for r in records]
    total = sum(counts)
    single = total == len(records)  # one row per request: nothing to repeat

    def per_row(values: Sequence[Any], type_: pa.DataType) -> pa.Array:
        if single:
            return pa.array(values, type=type_)
        return pa.array(np.repeat(np.asarray(values, dtype=object), counts), type=type_)

    columns: dict[str, pa.Array] = {
        "request_id": per_row([r.request_id for r in records], pa.string()),
        "row": pa.array(
            np.zeros(total, dtype=np.int32)
            if single
            else np.concatenate([np.arange(n, dtype=np.int32) for n in counts]),
            type=pa.int32(),
        ),
        "ts": pa.array(np.repeat(np.array([_arrival_ms(r) for r in records], dtype="datetime64[ms]"), counts)).cast(
            pa.timestamp("ms", tz="UTC")
        ),
        "endpoint": per_row([r.endpoint for r in records], pa.string()),
        "role": per_row([r.role for r in records], pa.string()),
        "model": per_row([r.model for r in records], pa.string()),
        "model_version": pa.array(np.repeat(np.array([r.version for r in records], dtype=np.int32), counts)),
        "latency_ms": pa.array(np.repeat(np.array([r.latency_ms for r in records], dtype=np.float32), counts)),
    }
    if not records[0].with_inputs:
        # A shadow's copy: its inputs are the primary's row of the same request_id.
        parts: list[dict[str, Any]] = []
    elif all(isinstance(r.batch, NumericBatch) for r in records):
        matrix = np.concatenate([r.batch.matrix for r in records])  # type: ignore[union-attr]
        parts = [{name: matrix[:, i] for i, name in enumerate(signature.names)}]
    else:
        parts = [batch_columns(r.batch, signature) for r in records]
    fields = []
    for col in signature.columns if parts else ():
        values = parts[0][col.name] if len(parts) == 1 else np.concatenate([p[col.name] for p in parts])
        try:
            fields.append(pa.array(values, type=col.type, from_pandas=True))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            fields.append(pa.array(values, from_pandas=True))  # as scored: 2.5 sent for an int64 column
    if parts:
        columns["inputs"] = pa.StructArray.from_arrays(fields, names=list(signature.names))
    if all(r.entities is None for r in records):
        columns["entities"] = pa.nulls(total, type=pa.string())
    else:
        entities: list[str | None] = []
        for r, n in zip(records, counts, strict=True):
            if r.entities is None:
                entities.extend([None] * n)
            else:
                entities.extend(orjson.dumps(e, default=str).decode() for e in r.entities)
        columns["entities"] = pa.array(entities, type=pa.string())
    first = records[0].prediction
    if first.label is not None:
        columns["label"] = pa.array(np.concatenate([np.asarray(r.prediction.label) for r in records]))
    if first.probabilities is not None:
        proba = np.concatenate([np.asarray(r.prediction.probabilities, dtype=np.float64) for r in records])
        columns["score"] = pa.array(proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1))
        columns["probabilities"] = pa.FixedSizeListArray.from_arrays(pa.array(proba.reshape(-1)), proba.shape[1]).cast(
            pa.list_(pa.float64())
        )
    if first.prediction is not None:
        columns["prediction"] = pa.array(
            np.concatenate([np.asarray(r.prediction.prediction, dtype=np.float64) for r in records])
        )
    extras = [name for name in first.extras if all(name in r.prediction.extras for r in records)]
    if extras:
        columns["extras"] = pa.StructArray.from_arrays(
            [_output_array(np.concatenate([np.asarray(r.prediction.extras[n]) for r in records])) for n in extras],
            names=extras,
        )
    table = pa.table(columns)
    assert table.num_rows == total
    return table


def _arrival_ms(record: LoggedRequest) -> int:
    return record.ts_ms - round(record.latency_ms)


def _output_array(values: np.ndarray[Any, Any]) -> pa.Array:
    """An extra output as an Arrow column: (N,) as it is, (N, k) as lists, anything Arrow
    cannot take as JSON text."""
    try:
        if values.ndim == 1:
            return pa.array(values, from_pandas=True)
        return pa.array(list(values.reshape(len(values), -1)), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.array([orjson.dumps(v, default=str, option=orjson.OPT_SERIALIZE_NUMPY).decode() for v in values])

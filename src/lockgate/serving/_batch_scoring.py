"""Batch scoring: a registered model over Parquet files, streamed in chunks, as a tracked run.

:func:`batch_predict` loads the model as the server does (:func:`~lockgate.serving.load_runtime`:
hash-checked, ONNX Runtime when its conversion was accepted), checks every input's footer
against the model's signature before scoring anything, scores the rows chunk by chunk (in
this process or on Ray) and writes one Parquet file, all or nothing
(:mod:`lockgate.serving._batch_output` lists its columns).

The work is a run (experiment ``batch-predict`` by default, tag ``lockgate.kind=batch-predict``)
with lineage edges ``dataset → run`` (``input:batch``, one per input file, keyed by its URI
and content hash), ``model version → run`` (``input:model``) and ``run → dataset``
(``output``, the output file and its sha256), and one audit event, so
``lockgate lineage runs:/ID`` and ``lockgate lineage models:/NAME/VERSION`` show where the
scores came from.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from lockgate.entities import LineageEdge, ModelVersion, NodeKind
from lockgate.errors import InvalidInputError
from lockgate.hashing import sha256_file
from lockgate.serving._batch_inputs import InputPlan, plan_inputs, resolve_inputs
from lockgate.serving._batch_local import score_local
from lockgate.serving._batch_output import OutputFile, output_path, prediction_columns
from lockgate.serving._loading import load_runtime, onnx_check
from lockgate.serving._onnx import OnnxRuntime
from lockgate.serving._runtimes import ModelRuntime, Prediction
from lockgate.serving._signature import Signature
from lockgate.workspace import Workspace

__all__ = ["DEFAULT_CHUNK_ROWS", "BatchPredictionResult", "batch_predict"]

# Measured on the W7 model (bench/w7_batch.py): scikit-learn's tree ensembles score a chunk
# of 64Ki rows about a third faster per row than one of a million (the chunk stays in cache),
# and a few chunks in flight cost megabytes, not gigabytes.
DEFAULT_CHUNK_ROWS = 65_536
Executor = Literal["local", "ray"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchPredictionResult:
    """What :func:`batch_predict` did."""

    rows: int
    seconds: float
    output: str
    output_sha256: str
    run_id: str
    model_uri: str
    runtime: str
    executor: str
    inputs: tuple[str, ...] = field(default=())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second),
            "output": self.output,
            "output_sha256": self.output_sha256,
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "runtime": self.runtime,
            "executor": self.executor,
            "inputs": list(self.inputs),
        }


def batch_predict(
    ws: Workspace,
    model: str | ModelVersion,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threads: int | None = None,
    prefer_onnx: bool = True,
    executor: Executor = "local",
    ray_address: str | None = None,
    experiment: str = "batch-predict",
    progress: Callable[[int, int], None] | None = None,
) -> BatchPredictionResult:
    """Score Parquet ``inputs`` with a registered model and write the predictions to ``output``.

    ``inputs`` are files, folders, globs or ``s3://`` URIs. ``id_column`` names an input
    column copied to the output as each row's id; without one, rows are identified by
    ``input_file`` and ``row``. ``threads`` score chunks at once in this process (default: one
    per core; a custom model always gets one, as its code may not be thread-safe); on Ray, each
    actor scores on one core. ``progress(done, total)`` is called after every chunk.

    >>> import tempfile, numpy as np, pyarrow as pa, pyarrow.parquet as pq, lockgate as lg
    >>> from pathlib import Path
    >>> from sklearn.linear_model import LogisticRegression
    >>> d = Path(tempfile.mkdtemp())
    >>> x = pa.table({"a": np.arange(8.0), "b": np.ones(8)})
    >>> ws = lg.Workspace.open(d / "ws")
    >>> with ws.start_run("train") as run:
    ...     mv = run.log_model(LogisticRegression().fit(x.to_pandas(), [0, 1] * 4), name="m", input_example=x)
    >>> pq.write_table(x, d / "x.parquet")
    >>> result = batch_predict(ws, "models:/m/1", d / "x.parquet", d / "scores.parquet", prefer_onnx=False)
    >>> result.rows, pq.read_table(d / "scores.parquet").column_names[:4]
    (8, ['input_file', 'row', 'model', 'model_version'])
    """
    _check_options(executor, chunk_rows, threads)
    target = output_path(output)
    mv = model if isinstance(model, ModelVersion) else ws.models.get(model)
    plan = _checked_inputs(ws, mv, inputs, target, id_column)
    # The server's runtime, as it is. Its ONNX session runs on one intra-op thread; a batch
    # gets its parallelism from scoring several chunks at once instead, which measured faster
    # than intra-op threads and, unlike their spinning pool, holds up on a busy machine.
    runtime = load_runtime(ws, mv, prefer_onnx=prefer_onnx)
    workers = 1 if runtime.kind == "custom" else threads or len(os.sched_getaffinity(0))
    params = {
        "model": mv.uri,
        "runtime": runtime.kind,
        "executor": executor,
        "inputs": len(plan.files),
        "output": str(target),
        "chunk_rows": chunk_rows,
        "threads": workers if executor == "local" else "",
        "id_column": id_column or "",
    }
    tags = {"lockgate.kind": "batch-predict", "lockgate.model": mv.uri}
    with contextlib.ExitStack() as stack:
        if executor == "ray":
            from lockgate.serving._batch_ray import ray_connection  # Ray only when asked for

            # Connected before the run starts: an unreachable cluster leaves no failed run behind.
            stack.enter_context(ray_connection(ray_address))
        run = stack.enter_context(ws.runs.start("batch-predict", experiment=experiment, params=params, tags=tags))
        hasher = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="lockgate-batch-hash"))
        # Input hashes are taken while the rows are scored: a core is free while the model runs.
        fingerprints = hasher.submit(lambda: [f.fingerprint() for f in plan.files])
        started = time.perf_counter()
        with OutputFile(target) as out:
            sink = _Sink(out, plan, model=mv.name, version=mv.version)
            advance = _Progress(plan.total_rows, progress)
            if executor == "ray":
                from lockgate.serving._batch_ray import score_ray

                portable = _portable(ws, mv, runtime)
                score_ray(plan, portable, chunk_rows=chunk_rows, write=sink.columns, progress=advance)
            else:
                score_local(
                    plan, runtime, chunk_rows=chunk_rows, threads=workers, write=sink.prediction, progress=advance
                )
            out.commit(expected_rows=plan.total_rows)
        seconds = time.perf_counter() - started
        output_sha = sha256_file(target)
        _record(ws, run.id, mv, plan, fingerprints.result(), target, output_sha, rows=out.rows)
        run.log_metrics({"rows": out.rows, "seconds": seconds, "rows_per_second": out.rows / max(seconds, 1e-9)})
    return BatchPredictionResult(
        rows=out.rows,
        seconds=seconds,
        output=str(target),
        output_sha256=output_sha,
        run_id=run.id,
        model_uri=mv.uri,
        runtime=runtime.kind,
        executor=executor,
        inputs=tuple(f.uri for f in plan.files),
    )


def _check_options(executor: str, chunk_rows: int, threads: int | None) -> None:
    if executor not in ("local", "ray"):
        raise InvalidInputError(f"executor {executor!r} is not known; use 'local' or 'ray'")
    if not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise InvalidInputError(f"chunk_rows must be a positive number of rows, not {chunk_rows!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InvalidInputError(f"threads must be a positive number, not {threads!r}")


def _checked_inputs(
    ws: Workspace,
    mv: ModelVersion,
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    target: Path,
    id_column: str | None,
) -> InputPlan:
    """The input files, every footer checked against the model's signature, before anything is written."""
    items = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    files = resolve_inputs(items, settings=ws.settings)
    if any(f.uri == str(target) for f in files):
        raise InvalidInputError(f"output {target} is also an input; write the scores to another file")
    plan = plan_inputs(files, Signature.from_registry(mv.signature), model=mv.uri, id_column=id_column)
    if plan.total_rows == 0:
        raise InvalidInputError("the inputs hold no rows, so there is nothing to score; check the inputs")
    return plan


class _Progress:
    """Counts scored rows and reports ``(done, total)``."""

    def __init__(self, total: int, report: Callable[[int, int], None] | None) -> None:
        self._total = total
        self._report = report
        self._done = 0

    def __call__(self, rows: int) -> None:
        self._done += rows
        if self._report is not None:
            self._report(self._done, self._total)


def _onnx_bytes(ws: Workspace, mv: ModelVersion) -> bytes | None:
    check = onnx_check(ws, mv)
    if check is None or not check.accepted or check.onnx_sha256 is None:
        return None
    return ws.artifacts.get_bytes(check.onnx_sha256)


def _portable(ws: Workspace, mv: ModelVersion, runtime: ModelRuntime) -> Any:
    from lockgate.serving._batch_ray import PortableRuntime

    if isinstance(runtime, OnnxRuntime):
        bytes_ = _onnx_bytes(ws, mv)
        if bytes_ is not None:
            return PortableRuntime(runtime.signature, onnx_bytes=bytes_)
        runtime = load_runtime(ws, mv, prefer_onnx=False)
    return PortableRuntime(runtime.signature, runtime=runtime)


class _Sink:
    """Turns scored chunks into output rows (ids, model, version, predictions), in input order."""

    def __init__(self, out: OutputFile, plan: InputPlan, *, model: str, version: int) -> None:
        self._out = out
        self._plan = plan
        self._model = pa.scalar(model, pa.string())
        self._version = pa.scalar(version, pa.int32())
        self._file = 0
        self._row = 0

    def prediction(self, scored: tuple[int, Any, Prediction]) -> None:
        rows, ids, prediction = scored
        self.columns((rows, ids, prediction_columns(prediction, rows=rows)))

    def columns(self, scored: tuple[int, Any, dict[str, Any]]) -> None:
        rows, ids, scores = scored
        head = {self._plan.id_column: ids} if self._plan.id_column is not None else self._row_ids(rows)
        self._out.write(
            pa.table(
                {
                    **head,
                    "model": pa.repeat(self._model, rows),
                    "model_version": pa.repeat(self._version, rows),
                    **scores,
                }
            )
        )

    def _row_ids(self, rows: int) -> dict[str, pa.Array]:
        """``input_file`` and ``row`` of the next ``rows`` rows (a chunk may span files)."""
        files: list[pa.Array] = []
        positions: list[np.ndarray[Any, Any]] = []
        left = rows
        while left > 0:
            if self._file >= len(self._plan.files):
                raise InvalidInputError("more rows were scored than the inputs hold; check that no input changed")
            take = min(left, self._plan.rows[self._file] - self._row)
            files.append(pa.repeat(pa.scalar(self._plan.files[self._file].uri, pa.string()), take))
            positions.append(np.arange(self._row, self._row + take, dtype=np.int64))
            self._row += take
            left -= take
            if self._row == self._plan.rows[self._file]:
                self._file, self._row = self._file + 1, 0
        return {
            "input_file": pa.concat_arrays(files) if len(files) != 1 else files[0],
            "row": pa.array(np.concatenate(positions) if len(positions) != 1 else positions[0]),
        }


def _record(
    ws: Workspace,
    run_id: str,
    mv: ModelVersion,
    plan: InputPlan,
    fingerprints: list[str],
    target: Path,
    output_sha: str,
    *,
    rows: int,
) -> None:
    """Lineage (inputs → run, model version → run, run → output) and one audit event, in one transaction."""
    edges = [
        LineageEdge(
            src_kind=NodeKind.DATASET,
            src_id=f"{f.uri}@{digest}",
            relation="input:batch",
            dst_kind=NodeKind.RUN,
            dst_id=run_id,
        )
        for f, digest in zip(plan.files, fingerprints, strict=True)
    ]
    edges.append(
        LineageEdge(
            src_kind=NodeKind.MODEL_VERSION,
            src_id=mv.node_id,
            relation="input:model",
            dst_kind=NodeKind.RUN,
            dst_id=run_id,
        )
    )
    edges.append(
        LineageEdge(
            src_kind=NodeKind.RUN,
            src_id=run_id,
            relation="output",
            dst_kind=NodeKind.DATASET,
            dst_id=f"{target}@{output_sha}",
        )
    )
    with ws.db.write() as conn:
        ws.lineage.record(conn, edges)
        ws.audit.record(
            conn,
            actor=ws.settings.actor,
            action="batch_predict.completed",
            object_kind="run",
            object_id=run_id,
            details={
                "model": mv.uri,
                "rows": rows,
                "inputs": [f"{f.uri}@{d}" for f, d in zip(plan.files, fingerprints, strict=True)],
                "output": f"{target}@{output_sha}",
            },
        )

"""Batch scoring on a Ray cluster with Ray Data: ``read_parquet`` then ``map_batches``.

The driver (this process) resolves and checks the inputs, loads the model (hash-checked) and
does all the recording, as for a local run; Ray actors, one CPU each, only turn chunks into
predictions. Each actor builds its runtime once from what the driver sends: the loaded
scikit-learn or custom model, or the accepted ONNX bytes (an ONNX Runtime session cannot be
pickled). Rows come back in input order (``preserve_order``), so the driver assigns row ids
and writes the output exactly as a local run does.

Addresses as for pipelines (:mod:`lockgate.pipelines._ray`): ``HOST:PORT`` of a head's GCS
port from a node of the cluster, ``ray://HOST:10001`` (Ray Client) from elsewhere, or
``RAY_ADDRESS``. Workers read S3 inputs with their own credentials (the AWS chain of their
environment); nothing secret travels with the tasks.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from lockgate.errors import LockgateError, UnavailableError
from lockgate.serving._batch_inputs import InputPlan, model_batch
from lockgate.serving._batch_output import prediction_columns
from lockgate.serving._onnx import OnnxRuntime
from lockgate.serving._runtimes import ModelRuntime
from lockgate.serving._signature import Signature

__all__ = ["PortableRuntime", "ray_connection", "score_ray"]


@dataclass(frozen=True, slots=True)
class PortableRuntime:
    """What a Ray actor needs to rebuild the driver's runtime."""

    signature: Signature
    runtime: ModelRuntime | None = None
    onnx_bytes: bytes | None = None

    def build(self) -> ModelRuntime:
        if self.onnx_bytes is not None:
            return OnnxRuntime(self.onnx_bytes, self.signature, threads=1)
        assert self.runtime is not None
        return self.runtime


class _Scorer:
    """One Ray actor: the runtime, built once, scoring chunks into output columns."""

    def __init__(self, portable: PortableRuntime, id_column: str | None) -> None:
        self._runtime = portable.build()
        self._id_column = id_column

    def __call__(self, table: pa.Table) -> pa.Table:
        prediction = self._runtime.predict(model_batch(table, self._runtime.signature))
        columns = prediction_columns(prediction, rows=table.num_rows)
        if self._id_column is not None:
            columns = {self._id_column: table.column(self._id_column), **columns}
        return pa.table(columns)


Received = tuple[int, "pa.ChunkedArray | None", dict[str, Any]]


def score_ray(
    plan: InputPlan,
    portable: PortableRuntime,
    *,
    chunk_rows: int,
    write: Callable[[Received], None],
    progress: Callable[[int], None],
) -> None:
    """Score every row of ``plan`` on the Ray cluster this process is connected to
    (:func:`ray_connection`); ``write`` gets ``(rows, ids, output columns)`` per block, in input order."""
    import ray

    ray_: Any = ray  # Ray's API is partly untyped
    context = ray_.data.DataContext.get_current()
    saved = (context.execution_options.preserve_order, context.enable_progress_bars)
    context.execution_options.preserve_order = True  # row ids are assigned by position
    context.enable_progress_bars = False  # the CLI draws its own; Ray's would mix into it
    try:
        cpus = max(1, int(ray_.cluster_resources().get("CPU", 1)))
        fs, paths = _dataset_paths(plan)
        dataset = ray_.data.read_parquet(
            paths, filesystem=fs, columns=list(plan.columns), file_extensions=None, partitioning=None
        ).map_batches(
            _Scorer,
            fn_constructor_args=(portable, plan.id_column),
            batch_size=chunk_rows,
            batch_format="pyarrow",
            concurrency=(1, cpus),
            num_cpus=1,
        )
        blocks = dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=2)
        for table in _unwrapped(blocks, ray_.exceptions.RayError):
            ids = table.column(plan.id_column) if plan.id_column is not None else None
            scores = {name: table.column(name) for name in table.column_names if name != plan.id_column}
            write((table.num_rows, ids, scores))
            progress(table.num_rows)
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = saved


def _dataset_paths(plan: InputPlan) -> tuple[pafs.FileSystem | None, list[str]]:
    """Paths and a file system that pickle: a worker opens S3 with its own credentials."""
    if not any(f.is_s3 for f in plan.files):
        return None, [f.path for f in plan.files]
    settings = next(f.settings for f in plan.files if f.settings is not None)
    endpoint = settings.s3_endpoint_url
    options: dict[str, Any] = {}
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        options = {"endpoint_override": host or scheme, "scheme": scheme if host else "https"}
    return pafs.S3FileSystem(**options), [f.uri.removeprefix("s3://") for f in plan.files]


def _unwrapped(tables: Any, ray_error: type[BaseException]) -> Iterator[pa.Table]:
    """Ray's iteration, with a lockgate error raised in an actor re-raised as itself, and
    Ray's own failures (a node without lockgate, a lost worker) as one sentence."""
    from lockgate.pipelines._ray import _first_line

    iterator = iter(tables)
    while True:
        try:
            table = next(iterator)
        except StopIteration:
            return
        except ray_error as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, LockgateError):
                raise cause from None
            raise UnavailableError(
                f"Ray could not score the inputs ({type(exc).__name__}: {_first_line(exc)}); check that every "
                "node has lockgate[ray] and the model's packages installed, and can read the inputs"
            ) from exc
        yield table


@contextlib.contextmanager
def ray_connection(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster at ``address`` for the block (unless this process already
    is), with the pipeline executor's checks: an address that answers nothing fails in seconds."""
    try:
        import ray
    except ImportError:
        raise UnavailableError("--executor ray needs Ray; install lockgate[ray]") from None
    # The pipeline executor's connection checks and messages, so both read the same.
    from lockgate.pipelines._ray import _check_reachable, _first_line, _mentions, _notices_to_stderr, _own_sigterm

    if ray.is_initialized():
        yield
        return
    _check_reachable(address)
    with _own_sigterm():
        try:
            ray.init(address=address, namespace="lockgate", logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 -- Ray raises many kinds; the user gets one sentence
            with contextlib.suppress(Exception):
                ray.shutdown()
            where = address or "the default address"
            if _mentions(exc, "InvalidAuthToken", "Unauthenticated"):
                raise UnavailableError(
                    f"the Ray cluster at {where} requires an authentication token; give this process "
                    "RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                ) from None
            raise UnavailableError(
                f"cannot connect to the Ray cluster at {where} ({type(exc).__name__}: {_first_line(exc)}); "
                "check it with: ray status"
            ) from None
    restore = _notices_to_stderr()
    try:
        yield
    finally:
        with _own_sigterm():
            ray.shutdown()
        restore()

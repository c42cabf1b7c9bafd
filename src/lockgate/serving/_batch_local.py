"""Batch scoring in this process: reading, scoring and writing overlap on threads.

A reader thread decodes Parquet and builds each chunk's model input (the float64 matrix
costs about a fifth of the plain loop's time), ``threads`` scoring threads run the model on
successive chunks (one runtime, shared: scikit-learn's predict and an ONNX Runtime session are
safe to call concurrently), and a writer thread turns predictions into Arrow and encodes the
output, in input order. Each hand-off holds a few chunks, so memory stays a few chunks
whatever the input's size. pyarrow, numpy, scikit-learn's tree code and ONNX Runtime release
the GIL for their heavy work, which is what lets the threads run on separate cores.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Generic, NamedTuple, TypeVar

import pyarrow as pa

from lockgate.errors import InvalidInputError, UserCodeError
from lockgate.serving._batch import Batch
from lockgate.serving._batch_inputs import InputPlan, model_batch, read_chunks
from lockgate.serving._runtimes import ModelRuntime, Prediction

__all__ = ["Background", "Prefetched", "score_local"]

T = TypeVar("T")
_END = object()
_POLL_S = 0.1


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetched(Generic[T]):
    """Iterates ``source`` on a thread, keeping up to ``depth`` items ready; its errors are
    raised here, and leaving early stops the thread."""

    def __init__(self, source: Iterable[T], *, depth: int = 2, name: str = "lockgate-batch-reader") -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)

    def __enter__(self) -> Prefetched[T]:
        self._thread.start()
        return self

    def _run(self, source: Iterable[T]) -> None:
        try:
            for item in source:
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            self._put(_Failed(exc))
            return
        self._put(_END)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


class Background(Generic[T]):
    """Runs ``consume`` on a thread for each item :meth:`put` hands over, in order, at most
    ``depth`` waiting; a failure of ``consume`` is raised by the next :meth:`put` or at exit."""

    def __init__(self, consume: Callable[[T], None], *, depth: int = 2, name: str = "lockgate-batch-writer") -> None:
        self._consume = consume
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Background[T]:
        self._thread.start()
        return self

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            if self._error is None:
                try:
                    self._consume(item)
                except BaseException as exc:  # noqa: BLE001 - raised in the producing thread
                    self._error = exc

    def put(self, item: T) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._queue.put(_END)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error


Scored = tuple[int, "pa.ChunkedArray | pa.Array | None", Prediction]


def score_local(
    plan: InputPlan,
    runtime: ModelRuntime,
    *,
    chunk_rows: int,
    threads: int,
    write: Callable[[Scored], None],
    progress: Callable[[int], None],
) -> None:
    """Score every row of ``plan`` with ``runtime`` on ``threads`` threads; ``write`` gets
    ``(rows, ids, prediction)`` per chunk, in input order, on the writer thread."""
    signature = runtime.signature
    id_column = plan.id_column

    def prepared() -> Iterator[_Chunk]:
        for index, start, batch in read_chunks(plan, chunk_rows):
            ids = batch.column(id_column) if id_column is not None else None
            yield _Chunk(model_batch(batch, signature), batch.num_rows, ids, index, start)

    def finish(chunk: _Chunk, scored: Future[Prediction]) -> None:
        try:
            prediction = scored.result()
        except (InvalidInputError, UserCodeError) as exc:
            # The runtime names a row of the chunk; the user needs the file and its rows.
            where = f"input {plan.files[chunk.file].uri}, rows {chunk.start}-{chunk.start + chunk.rows - 1}"
            raise type(exc)(f"{where}: {exc}") from exc
        writer.put((chunk.rows, chunk.ids, prediction))
        progress(chunk.rows)

    pending: deque[tuple[_Chunk, Future[Prediction]]] = deque()
    with (
        Prefetched(prepared()) as chunks,
        Background(write) as writer,
        ThreadPoolExecutor(threads, thread_name_prefix="lockgate-batch-score") as pool,
    ):
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(runtime.predict, chunk.batch)))
                if len(pending) > threads:  # one chunk waiting per thread keeps every thread busy
                    finish(*pending.popleft())
            while pending:
                finish(*pending.popleft())
        finally:
            for _, scored in pending:
                scored.cancel()


class _Chunk(NamedTuple):
    batch: Batch
    rows: int
    ids: Any
    file: int
    start: int

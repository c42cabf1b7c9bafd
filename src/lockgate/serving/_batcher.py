"""Dynamic batching: requests that arrive together are scored in one model call.

Every request's rows join a queue; the queue is scored when it holds ``max_batch_size`` rows,
or ``max_wait_ms`` after its first request arrived, whichever comes first. With
``max_wait_ms=0`` a batch is whatever arrived in the same turn of the event loop: no request
waits for a timer, yet under load the requests parsed while the model ran form the next
batch. Requests are answered in the order they arrived, each with its own rows.

A fast model runs on the event loop itself: a thread hand-off costs more than an ONNX call on
a few rows (tens of µs against about 10), and while the model runs, new requests accumulate
in the sockets and become the next, bigger batch. A slow one — model calls averaging over
``offload_ms``, a custom model calling out to a service — runs on a thread instead, one call
at a time per model version, so health checks, other deployments and the queue's bound keep
working while it runs; the requests that arrive meanwhile form its next batch.

The queue is bounded (``max_queue`` rows): past it, :meth:`DynamicBatcher.submit` raises
:class:`~lockgate.errors.Overloaded` at once, so overload answers 429 instead of growing
every request's latency without limit. When a merged batch fails, each request is scored
alone, so one request's bad value fails that request only.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from lockgate.errors import Overloaded
from lockgate.serving._batch import Batch, batch_rows, concat_batches
from lockgate.serving._runtimes import Prediction
from lockgate.serving._signature import Signature

__all__ = ["BatchStats", "DynamicBatcher"]

# How much each model call moves the average that decides where the next one runs.
_EWMA = 0.2


@dataclass(slots=True)
class _Waiting:
    batch: Batch
    rows: int
    future: asyncio.Future[Prediction]


# What scoring one request came to: its rows' prediction, or the error it alone raised.
_Outcome = tuple[Prediction | None, BaseException | None]


@dataclass(slots=True)
class BatchStats:
    """Counts a batcher keeps for tests and the demo (metrics get the same through ``on_batch``)."""

    batches: int = 0
    requests: int = 0
    rows: int = 0
    largest: int = 0
    offloaded_batches: int = 0
    sizes: dict[int, int] = field(default_factory=dict)


class DynamicBatcher:
    """Merge concurrent requests for one model version into batches.

    ``predict`` scores a batch; ``on_batch(rows, requests, seconds)`` is told about every
    model call and ``on_depth(rows)`` about every change of the queue's size. With an
    ``executor``, a model whose calls average over ``offload_ms`` runs there rather than on
    the event loop (from the first call with ``start_offloaded``).
    """

    def __init__(
        self,
        predict: Callable[[Batch], Prediction],
        signature: Signature,
        *,
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
        executor: Executor | None = None,
        offload_ms: float = 2.0,
        start_offloaded: bool = False,
        on_batch: Callable[[int, int, float], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self._signature = signature
        self.max_batch_size = max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._executor = executor
        self._offload_after = offload_ms / 1000.0
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._queue: deque[_Waiting] = deque()
        self._queued_rows = 0
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._immediate = False
        # The moving average of a model call; a model presumed slow (a custom one) starts above
        # the bar, so even its first call leaves the loop free.
        self._call_seconds = 2 * self._offload_after if start_offloaded else 0.0
        self._running: asyncio.Future[Any] | None = None  # the model call on the executor, if any
        self.stats = BatchStats()

    @property
    def depth(self) -> int:
        """Rows waiting to be scored."""
        return self._queued_rows

    @property
    def offloaded(self) -> bool:
        """Whether the next model call runs on the executor (the model is slow)."""
        return self._executor is not None and self._call_seconds > self._offload_after

    async def submit(self, batch: Batch) -> Prediction:
        """Score ``batch`` as part of the next model call; raises what scoring it alone raises."""
        rows = batch_rows(batch)
        if self._queued_rows and self._queued_rows + rows > self.max_queue:
            raise Overloaded(
                f"the queue holds {self._queued_rows} rows against a limit of {self.max_queue}; retry in a moment "
                "or raise max_queue / add workers"
            )
        loop = asyncio.get_running_loop()
        waiting = _Waiting(batch, rows, loop.create_future())
        self._queue.append(waiting)
        self._queued_rows += rows
        if self._on_depth is not None:
            self._on_depth(self._queued_rows)
        if self._running is None:  # else the running call's end starts the next one
            if self._queued_rows >= self.max_batch_size or self._max_wait <= 0:
                self._schedule(loop, immediate=True)
            elif self._scheduled is None:
                self._schedule(loop, immediate=False)
        return await waiting.future

    def _schedule(self, loop: asyncio.AbstractEventLoop, *, immediate: bool) -> None:
        if self._scheduled is not None:
            if self._immediate or not immediate:
                return
            self._scheduled.cancel()
        self._immediate = immediate
        self._scheduled = loop.call_soon(self._flush) if immediate else loop.call_later(self._max_wait, self._flush)

    def _flush(self) -> None:
        self._scheduled = None
        if self._running is not None or not self._queue:
            return
        taken = [self._queue.popleft()]
        rows = taken[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
            item = self._queue.popleft()
            taken.append(item)
            rows += item.rows
        self._queued_rows -= rows
        if self._on_depth is not None:
            self._on_depth(self._queued_rows)
        live = [w for w in taken if not w.future.done()]  # a request whose client left is dropped
        if not live:
            self._next()
            return
        if self.offloaded:
            assert self._executor is not None
            loop = asyncio.get_running_loop()
            running = loop.run_in_executor(self._executor, self._score, live)
            self._running = running
            self.stats.offloaded_batches += 1
            running.add_done_callback(lambda done: self._finish(live, done))
            return
        self._deliver(live, *self._score(live))
        self._next()

    def _next(self) -> None:
        if self._queue:
            # What is left has waited a whole model call already: score it next turn.
            self._schedule(asyncio.get_running_loop(), immediate=True)

    def _finish(self, live: list[_Waiting], done: asyncio.Future[tuple[list[_Outcome], float]]) -> None:
        self._running = None
        error = RuntimeError("the model call was cancelled") if done.cancelled() else done.exception()
        if error is not None:  # the executor was shut down under it, or the model raised past Exception
            self._deliver(live, [(None, error)] * len(live), 0.0)
        else:
            self._deliver(live, *done.result())
        self._next()

    def _score(self, live: list[_Waiting]) -> tuple[list[_Outcome], float]:
        """Each request's outcome and the seconds the model took; runs on the loop or the
        executor, so it touches neither the futures nor the queue."""
        started = time.perf_counter()
        outcomes: list[_Outcome]
        try:
            if len(live) == 1:
                outcomes = [(self._predict(live[0].batch), None)]
            else:
                merged = self._predict(concat_batches([w.batch for w in live], self._signature))
                outcomes = []
                start = 0
                for w in live:
                    outcomes.append((merged.slice(start, start + w.rows), None))
                    start += w.rows
        except Exception as exc:  # noqa: BLE001 - the requests get the error, not the event loop
            # Merged, one bad request would fail the others: each is scored alone instead.
            outcomes = [(None, exc)] if len(live) == 1 else [self._alone(w) for w in live]
        return outcomes, time.perf_counter() - started

    def _alone(self, waiting: _Waiting) -> _Outcome:
        try:
            return self._predict(waiting.batch), None
        except Exception as exc:  # noqa: BLE001 - this request's own error
            return None, exc

    def _deliver(self, live: list[_Waiting], outcomes: list[_Outcome], seconds: float) -> None:
        for w, (prediction, error) in zip(live, outcomes, strict=True):
            if w.future.done():  # the client left while the model ran
                continue
            if error is not None:
                w.future.set_exception(error)
            else:
                assert prediction is not None
                w.future.set_result(prediction)
        rows = sum(w.rows for w in live)
        self._call_seconds += _EWMA * (seconds - self._call_seconds)
        s = self.stats
        s.batches += 1
        s.requests += len(live)
        s.rows += rows
        s.largest = max(s.largest, rows)
        s.sizes[rows] = s.sizes.get(rows, 0) + 1
        if self._on_batch is not None:
            self._on_batch(rows, len(live), seconds)

    async def drain(self) -> None:
        """Score everything queued and wait for the model call running, if any (used when a
        model version is retired and at shutdown, after new requests stopped)."""
        while self._queue or self._running is not None:
            if self._running is not None:
                await asyncio.wait([self._running])
                await asyncio.sleep(0)  # let its done-callback deliver
                continue
            if self._scheduled is not None:
                self._scheduled.cancel()
                self._scheduled = None
            self._flush()
            await asyncio.sleep(0)

    def describe(self) -> dict[str, Any]:
        return {
            "max_batch_size": self.max_batch_size,
            "max_wait_ms": self._max_wait * 1000.0,
            "max_queue": self.max_queue,
            "queued_rows": self._queued_rows,
            "offloaded": self.offloaded,
        }

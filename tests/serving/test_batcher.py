"""DynamicBatcher on a real event loop: batches form, order and per-request errors are kept,
max_wait is honoured, the queue is bounded, a drain scores what is left, a slow model runs
off the loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import pytest

from lockgate.errors import Overloaded
from lockgate.serving._batch import Batch, NumericBatch, batch_rows, numeric_matrix
from lockgate.serving._batcher import DynamicBatcher
from lockgate.serving._runtimes import Prediction
from lockgate.serving._signature import Signature

SIG = Signature.from_registry({"inputs": [{"name": "x", "type": "double"}], "kind": "regressor"})
T = TypeVar("T")


def rows(*values: float) -> Batch:
    return NumericBatch(np.array([[v] for v in values], dtype=np.float64), SIG.names)


class Model:
    """Doubles ``x``; refuses negative values; records the size of every call."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.calls: list[int] = []
        self.sleep = sleep

    def __call__(self, batch: Batch) -> Prediction:
        self.calls.append(batch_rows(batch))
        if self.sleep:
            time.sleep(self.sleep)
        x = numeric_matrix(batch, SIG)[:, 0]
        if (x < 0).any():
            raise ValueError(f"negative x: {x[x < 0].tolist()}")
        return Prediction(kind="custom", prediction=x * 2)


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


def batcher(model: Model, **settings: Any) -> DynamicBatcher:
    options: dict[str, Any] = {"max_batch_size": 4, "max_wait_ms": 20, "max_queue": 64, **settings}
    return DynamicBatcher(model, SIG, **options)


def values(p: Prediction) -> list[float]:
    assert p.prediction is not None
    return [float(v) for v in p.prediction]


def test_concurrent_requests_form_batches_and_keep_their_rows_in_order() -> None:
    model = Model()
    sizes: list[tuple[int, int]] = []

    async def main() -> list[Prediction]:
        b = batcher(model, on_batch=lambda n, requests, _s: sizes.append((n, requests)))
        return await asyncio.gather(*(b.submit(rows(float(i))) for i in range(10)))

    answers = run(main)
    assert [values(a) for a in answers] == [[2.0 * i] for i in range(10)]
    assert model.calls == [4, 4, 2]
    assert sizes == [(4, 4), (4, 4), (2, 2)]


def test_multi_row_requests_are_merged_whole_and_sliced_back() -> None:
    model = Model()

    async def main() -> list[Prediction]:
        b = batcher(model, max_batch_size=5)
        return await asyncio.gather(b.submit(rows(1, 2)), b.submit(rows(3, 4, 5)), b.submit(rows(6, 7, 8, 9, 10, 11)))

    first, second, big = run(main)
    assert values(first) == [2, 4]
    assert values(second) == [6, 8, 10]
    assert values(big) == [2.0 * v for v in range(6, 12)]
    assert model.calls == [5, 6]  # a request over max_batch_size is scored alone, never split


def test_a_lone_request_waits_max_wait_and_a_full_batch_does_not() -> None:
    async def lone(wait_ms: float) -> float:
        b = batcher(Model(), max_wait_ms=wait_ms)
        started = time.perf_counter()
        await b.submit(rows(1.0))
        return time.perf_counter() - started

    async def full() -> float:
        b = batcher(Model(), max_batch_size=2, max_wait_ms=5000)
        started = time.perf_counter()
        await asyncio.gather(b.submit(rows(1.0)), b.submit(rows(2.0)))
        return time.perf_counter() - started

    assert 0.19 <= run(lambda: lone(200)) < 2.0
    assert run(lambda: lone(0)) < 0.1
    assert run(full) < 1.0  # not the 5 s timer


def test_max_wait_zero_batches_what_arrives_in_the_same_turn() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_batch_size=32, max_wait_ms=0)
        await asyncio.gather(*(b.submit(rows(float(i))) for i in range(6)))
        await b.submit(rows(1.0))

    run(main)
    assert model.calls == [6, 1]


def test_one_bad_request_fails_alone_and_keeps_its_own_error() -> None:
    model = Model()

    async def main() -> list[Any]:
        b = batcher(model, max_batch_size=8)
        jobs = [b.submit(rows(1.0)), b.submit(rows(2.0, -3.0)), b.submit(rows(4.0))]
        return await asyncio.gather(*jobs, return_exceptions=True)

    good, bad, other = run(main)
    assert values(good) == [2.0]
    assert values(other) == [8.0]
    assert isinstance(bad, ValueError)
    assert "negative x: [-3.0]" in str(bad)
    assert model.calls == [4, 1, 2, 1]  # the merged call failed, then each alone


def test_a_full_queue_refuses_at_once_and_keeps_what_it_holds() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_batch_size=100, max_wait_ms=10_000, max_queue=3)
        held = [asyncio.ensure_future(b.submit(rows(float(i)))) for i in range(3)]
        await asyncio.sleep(0)
        assert b.depth == 3
        with pytest.raises(Overloaded) as refused:
            await b.submit(rows(9.0))
        assert refused.value.retry_after >= 1
        assert "limit of 3" in str(refused.value)
        assert b.depth == 3
        assert not model.calls
        await b.drain()  # scores the held rows without waiting for the 10 s timer
        assert [values(h.result()) for h in held] == [[0.0], [2.0], [4.0]]
        assert b.depth == 0

    run(main)
    assert model.calls == [3]


def test_an_empty_queue_takes_a_request_larger_than_its_bound() -> None:
    async def main() -> Prediction:
        return await batcher(Model(), max_queue=2).submit(rows(1, 2, 3))

    assert values(run(main)) == [2, 4, 6]


def test_drain_scores_every_queued_request_in_batches() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_batch_size=4, max_wait_ms=60_000)
        held = [asyncio.ensure_future(b.submit(rows(float(i)))) for i in range(9)]
        await asyncio.sleep(0)
        started = time.perf_counter()
        await b.drain()
        assert time.perf_counter() - started < 1.0
        assert all(h.done() for h in held)
        assert [values(h.result())[0] for h in held] == [2.0 * i for i in range(9)]

    run(main)
    assert model.calls == [4, 4, 1]


def test_a_request_whose_client_left_is_not_scored() -> None:
    model = Model()

    async def main() -> None:
        b = batcher(model, max_batch_size=8, max_wait_ms=20)
        gone = asyncio.ensure_future(b.submit(rows(5.0)))
        kept = asyncio.ensure_future(b.submit(rows(1.0)))
        await asyncio.sleep(0)
        gone.cancel()
        assert values(await kept) == [2.0]

    run(main)
    assert model.calls == [1]


def test_a_slow_model_moves_off_the_loop_and_its_queue_forms_the_next_batch() -> None:
    model = Model(sleep=0.15)
    ticks: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    async def main() -> DynamicBatcher:
        with ThreadPoolExecutor(2) as pool:
            b = batcher(model, max_batch_size=64, max_wait_ms=0, executor=pool, offload_ms=5)
            await b.submit(rows(1.0))  # measured on the loop: slow
            assert b.offloaded
            stop = asyncio.Event()
            tick = asyncio.ensure_future(ticker(stop))
            first = asyncio.ensure_future(b.submit(rows(2.0)))
            await asyncio.sleep(0.03)  # the first call is running on a thread now
            later = [asyncio.ensure_future(b.submit(rows(float(i)))) for i in range(3, 8)]
            assert values(await first) == [4.0]
            assert [values(await r)[0] for r in later] == [2.0 * i for i in range(3, 8)]
            await b.drain()
            stop.set()
            await tick
            return b

    b = run(main)
    assert model.calls == [1, 1, 5]
    assert b.stats.offloaded_batches == 2
    gaps = np.diff(ticks)
    assert gaps.max() < 0.1, f"the loop stalled {gaps.max() * 1000:.0f} ms while the model ran"


def test_a_model_presumed_slow_runs_off_the_loop_from_its_first_call() -> None:
    async def main() -> DynamicBatcher:
        with ThreadPoolExecutor(1) as pool:
            b = batcher(Model(), executor=pool, start_offloaded=True)
            assert b.offloaded
            assert values(await b.submit(rows(1.0))) == [2.0]
            for _ in range(5):  # fast calls bring the average under the bar: back on the loop
                await b.submit(rows(1.0))
            assert not b.offloaded
            return b

    assert run(main).stats.offloaded_batches >= 1

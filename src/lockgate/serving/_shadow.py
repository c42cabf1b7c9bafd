"""Shadow copies: requests already answered, scored again on a shadow candidate in groups.

A request under a shadow rollout leaves a reference to its batch and its answer here (one
list append) and its caller gets the answer at once. Every ``every_s`` the copies gathered
for each shadow are merged into one batch and scored in one model call, on a task of its
own: the candidate's batcher offloads a slow model to a thread, and however slow the shadow
is, no caller waits for it. Comparing, counting and logging the group are vectorised, so a
shadow costs the primary a few microseconds per request, not a second model call's worth.

Past ``max_pending`` copies waiting, or ``max_groups`` groups in flight for one shadow (a
candidate slower than the traffic), further copies are skipped and counted in
:attr:`ShadowCopies.skipped` rather than queued without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.serving._batch import Batch, batch_rows, concat_batches
from lockgate.serving._host import ServedModel
from lockgate.serving._rollout_stats import ArmRecorder
from lockgate.serving._runtimes import Prediction
from lockgate.serving._signature import Signature

__all__ = ["ShadowCopies", "ShadowCopy", "agreeing", "scores_of"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShadowCopy:
    """One answered request, kept for its shadow: the rows as the primary took them, its
    answer, and how to build its rows again for a shadow with another signature."""

    request_id: str
    kind: str
    batch: Batch
    answer: Prediction
    entities: list[dict[str, Any]] | None
    rebuild: Callable[[Signature], Batch]
    primary: Signature


@dataclass(slots=True)
class _Queue:
    shadow: ServedModel
    copies: list[ShadowCopy] = field(default_factory=list)
    groups: int = 0  # groups being scored now


# (shadow, copy, its answer, latency ms, whether it scored the primary's very rows)
Log = Callable[[ServedModel, ShadowCopy, Prediction, float, bool], None]


class ShadowCopies:
    """Gathers shadow copies on the event loop and scores them in groups."""

    def __init__(
        self,
        arms: ArmRecorder,
        log: Log,
        *,
        every_s: float = 0.02,
        max_pending: int = 4096,
        max_groups: int = 4,
    ) -> None:
        self.arms = arms
        self.log = log
        self.every_s = every_s
        self.max_pending = max_pending
        self.max_groups = max_groups
        self.skipped = 0
        self._queues: dict[int, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    def add(self, shadow: ServedModel, copy: ShadowCopy) -> None:
        """Keep ``copy`` for ``shadow`` (or skip it, counted, when the shadow is behind)."""
        queue = self._queues.get(id(shadow))
        if queue is None or queue.shadow is not shadow:
            queue = self._queues[id(shadow)] = _Queue(shadow)
        if len(queue.copies) >= self.max_pending:
            self.skipped += 1
            return
        queue.copies.append(copy)
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run(), name="lockgate-shadows")

    async def close(self, timeout: float) -> None:
        """Score what is waiting and wait (up to ``timeout``) for the groups in flight."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._flush()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        for key, queue in list(self._queues.items()):
            if not queue.copies:
                if queue.groups == 0:
                    del self._queues[key]  # a retired shadow's queue goes with its last group
                continue
            if queue.groups >= self.max_groups:
                self.skipped += len(queue.copies)
                queue.copies = []
                continue
            copies, queue.copies = queue.copies, []
            queue.groups += 1
            task = loop.create_task(self._score(queue, copies))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _score(self, queue: _Queue, copies: list[ShadowCopy]) -> None:
        shadow = queue.shadow
        started = time.perf_counter()
        try:
            signature = shadow.runtime.signature
            # Signatures compared once per primary (a dataclass comparison is microseconds).
            same: dict[int, bool] = {}
            batches = []
            for c in copies:
                fits = same.get(id(c.primary))
                if fits is None:
                    fits = same[id(c.primary)] = c.primary == signature
                batches.append(c.batch if fits else c.rebuild(signature))
            merged = concat_batches(batches, signature)
            prediction = await shadow.batcher.submit(merged)
        except Exception as exc:  # noqa: BLE001 - a shadow's failure is counted, never answered
            ms = (time.perf_counter() - started) * 1000.0
            self.arms.failed(shadow.deployment, shadow.version, "shadow", ms, requests=len(copies))
            _log.debug("shadow %s failed on %d requests: %s", shadow.uri, len(copies), exc)
            return
        finally:
            queue.groups -= 1
        ms = (time.perf_counter() - started) * 1000.0
        scores = scores_of(prediction)
        self.arms.answered_many(shadow.deployment, shadow.version, "shadow", [ms] * len(copies), scores)
        answers = _concat_answers([c.answer for c in copies])
        self.arms.compared(
            shadow.deployment,
            shadow.version,
            agree=agreeing(answers, prediction),
            rows=len(prediction),
            primary_scores=scores_of(answers),
            shadow_scores=scores,
        )
        offset = 0
        for copy, batch in zip(copies, batches, strict=True):
            rows = batch_rows(batch)
            self.log(shadow, copy, prediction.slice(offset, offset + rows), ms, batch is copy.batch)
            offset += rows


def _concat_answers(answers: list[Prediction]) -> Prediction:
    if len(answers) == 1:
        return answers[0]

    def joined(values: list[Any]) -> Any:
        return None if any(v is None for v in values) else np.concatenate(values)

    return Prediction(
        kind=answers[0].kind,
        label=joined([a.label for a in answers]),
        probabilities=joined([a.probabilities for a in answers]),
        prediction=joined([a.prediction for a in answers]),
    )


def scores_of(prediction: Prediction) -> np.ndarray[Any, Any] | None:
    """A classifier's score per row: the positive class's probability (binary), the top
    probability (multi-class); None for a regressor or a model without probabilities."""
    proba = prediction.probabilities
    if proba is None:
        return None
    proba = np.asarray(proba)
    if proba.ndim != 2 or proba.shape[1] == 0:
        return None
    return proba[:, 1] if proba.shape[1] == 2 else proba.max(axis=1)


def agreeing(a: Prediction, b: Prediction) -> int:
    """How many rows two answers agree on: the same label, or predictions within 0.1%."""
    if a.label is not None and b.label is not None and a.label.shape == b.label.shape:
        return int(np.count_nonzero(np.asarray(a.label) == np.asarray(b.label)))
    if a.prediction is not None and b.prediction is not None and a.prediction.shape == b.prediction.shape:
        return int(np.count_nonzero(np.isclose(a.prediction, b.prediction, rtol=1e-3, atol=1e-9)))
    return 0

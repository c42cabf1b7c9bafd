"""The server's rollout duties: flush arm statistics every second and, in exactly one process
of all the servers sharing a metadata store, run the canary analyses that are due.

"Exactly one" is a lease in the metadata store (:meth:`RolloutService.take_analysis_lease`):
the holder renews it every tick; when it dies, the lease expires and another process takes
over within ``lease_seconds``. Both duties run on a thread, never on the event loop, and only
while some deployment has a rollout: a server without one makes no extra query.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from lockgate.clock import now_millis
from lockgate.serving._rollout_stats import ArmRecorder
from lockgate.workspace import Workspace

__all__ = ["RolloutAnalyst"]

_log = logging.getLogger(__name__)
_PRUNE_EVERY_S = 600.0


class RolloutAnalyst:
    """Flushes an :class:`ArmRecorder` and analyses due canaries while it holds the lease."""

    def __init__(
        self,
        ws: Workspace,
        recorder: ArmRecorder,
        *,
        active: Callable[[], bool],
        flush_seconds: float = 1.0,
        lease_seconds: float = 10.0,
        analyze: bool = True,
    ) -> None:
        self.ws = ws
        self.recorder = recorder
        self._active = active  # () -> bool: does any served deployment have a rollout?
        self.flush_seconds = flush_seconds
        self.lease_ms = int(lease_seconds * 1000)
        self.analyze = analyze
        self.holding = False
        self.decisions = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lockgate-analyst")
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = 0.0

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lockgate-analyst")

    async def stop(self) -> None:
        """Stop, flush what was counted since the last tick and give the lease up."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._final)
        self._pool.shutdown(wait=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.flush_seconds)
            if self.recorder.pending or self._active():
                await loop.run_in_executor(self._pool, self._tick)

    def _tick(self) -> None:
        rows = self.recorder.drain(now_millis())
        try:
            self.ws.rollouts.record_stats(rows)
        except Exception:  # noqa: BLE001 - the store blinked: these counts are lost, serving goes on
            _log.exception("could not store %d rollout statistics rows; dropping them", len(rows))
        if not self.analyze:
            return
        try:
            self.holding = self.ws.rollouts.take_analysis_lease(self.recorder.worker, ttl_ms=self.lease_ms)
            if not self.holding:
                return
            for decision in self.ws.rollouts.analyze_due():
                self.decisions += 1
                _log.info(
                    "deployment %s: canary at %d%%: %s (%s)",
                    decision.deployment,
                    decision.percent,
                    decision.action,
                    decision.verdict.reason,
                )
            if time.monotonic() - self._pruned_at > _PRUNE_EVERY_S:
                self._pruned_at = time.monotonic()
                self.ws.rollouts.prune_stats()
        except Exception:  # noqa: BLE001 - try again next tick; the lease lapses if this keeps failing
            _log.exception("the rollout analysis failed; trying again in %.0f s", self.flush_seconds)

    def _final(self) -> None:
        rows = self.recorder.drain(now_millis())
        try:
            self.ws.rollouts.record_stats(rows)
            if self.holding:
                self.ws.rollouts.release_analysis_lease(self.recorder.worker)
        except Exception:  # noqa: BLE001 - shutting down: say so and go
            _log.exception("could not store the last rollout statistics at shutdown")

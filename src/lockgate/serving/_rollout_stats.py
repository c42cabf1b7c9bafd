"""What a server process saw of each arm under a rollout, counted on the hot path.

Counting is a dictionary lookup, a bisect and a few additions per request, and happens only
for deployments with a rollout running. Every second :meth:`ArmRecorder.drain` hands the
counts over as rows for the metadata store (see :meth:`lockgate.deploy.RolloutService.
record_stats`), where every process's rows add up into the window an analysis reads.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.deploy._analysis import PairStats, latency_bin, score_bins

__all__ = ["ArmRecorder"]


@dataclass(slots=True)
class _Counts:
    requests: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    scores: dict[int, int] = field(default_factory=dict)
    pairs: PairStats = field(default_factory=PairStats)


class ArmRecorder:
    """Per-(deployment, version, role) counters of one server process.

    The event loop adds; the flusher thread swaps the whole table out under a lock, so a
    count is never lost between the two.
    """

    def __init__(self) -> None:
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int, str], _Counts] = {}

    def _arm(self, deployment: str, version: int, role: str) -> _Counts:
        key = (deployment, version, role)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts()
        return counts

    def answered(
        self, deployment: str, version: int, role: str, latency_ms: float, scores: np.ndarray[Any, Any] | None
    ) -> None:
        """One request answered (or, for a shadow, scored) in ``latency_ms``."""
        with self._lock:
            counts = self._arm(deployment, version, role)
            counts.requests += 1
            index = latency_bin(latency_ms)
            counts.latency[index] = counts.latency.get(index, 0) + 1
            if scores is not None and scores.size:
                for b in score_bins(scores).tolist():
                    counts.scores[b] = counts.scores.get(b, 0) + 1

    def failed(self, deployment: str, version: int, role: str, latency_ms: float) -> None:
        """One request the model call failed for (its error, its time)."""
        with self._lock:
            counts = self._arm(deployment, version, role)
            counts.requests += 1
            counts.errors += 1
            index = latency_bin(latency_ms)
            counts.latency[index] = counts.latency.get(index, 0) + 1

    def compared(
        self,
        deployment: str,
        version: int,
        *,
        agree: int,
        rows: int,
        primary_scores: np.ndarray[Any, Any] | None,
        shadow_scores: np.ndarray[Any, Any] | None,
    ) -> None:
        """A shadow's answer to one request set against the primary's."""
        pairs = PairStats(pairs=rows, agree=agree)
        if primary_scores is not None and shadow_scores is not None and primary_scores.shape == shadow_scores.shape:
            x = primary_scores.astype(np.float64)
            y = shadow_scores.astype(np.float64)
            pairs.sx, pairs.sy = float(x.sum()), float(y.sum())
            pairs.sxx, pairs.syy, pairs.sxy = float(x @ x), float(y @ y), float(x @ y)
        with self._lock:
            self._arm(deployment, version, "shadow").pairs.add(pairs)

    def drain(self, now_ms: int) -> list[dict[str, Any]]:
        """The counts since the last drain, as ``rollout_stats`` rows; the counters restart."""
        with self._lock:
            counts, self._counts = self._counts, {}
        rows = []
        for (deployment, version, role), c in counts.items():
            stats: dict[str, Any] = {
                "latency": {str(k): v for k, v in c.latency.items()},
                "scores": {str(k): v for k, v in c.scores.items()},
            }
            if c.pairs.pairs:
                stats["pairs"] = c.pairs.to_dict()
            rows.append(
                {
                    "deployment": deployment,
                    "version": version,
                    "role": role,
                    "ts": now_ms,
                    "worker": self.worker,
                    "requests": c.requests,
                    "errors": c.errors,
                    "stats": stats,
                }
            )
        return rows

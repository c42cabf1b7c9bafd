"""What a server process saw of each arm under a rollout, gathered on the hot path.

A request costs its arm two list appends (its latency and a reference to its scores), and
only for deployments with a rollout running: binning happens once a second, off the event
loop, when :meth:`ArmRecorder.drain` turns what gathered into rows for the metadata store
(see :meth:`lockgate.deploy.RolloutService.record_stats`), where every process's rows add
up into the window an analysis reads.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lockgate.deploy._analysis import LATENCY_EDGES_MS, PairStats, score_bins

__all__ = ["ArmRecorder"]


@dataclass(slots=True)
class _Counts:
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    scores: list[np.ndarray[Any, Any]] = field(default_factory=list)
    pairs: PairStats = field(default_factory=PairStats)


class ArmRecorder:
    """Per-(deployment, version, role) counters of one server process.

    The event loop adds; the flusher thread swaps the whole table out under a lock, so
    nothing gathered is lost between the two.
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
            counts.latencies.append(latency_ms)
            if scores is not None:
                counts.scores.append(scores)

    def answered_many(
        self, deployment: str, version: int, role: str, latencies: list[float], scores: np.ndarray[Any, Any] | None
    ) -> None:
        """Several requests answered together (a shadow scores its copies in groups)."""
        with self._lock:
            counts = self._arm(deployment, version, role)
            counts.latencies.extend(latencies)
            if scores is not None:
                counts.scores.append(scores)

    def failed(self, deployment: str, version: int, role: str, latency_ms: float, requests: int = 1) -> None:
        """Requests the model call failed for (their error, their time)."""
        with self._lock:
            counts = self._arm(deployment, version, role)
            counts.errors += requests
            counts.latencies.extend([latency_ms] * requests)

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

    @property
    def pending(self) -> bool:
        """Whether anything was gathered since the last drain."""
        return bool(self._counts)

    def drain(self, now_ms: int) -> list[dict[str, Any]]:
        """What gathered since the last drain, binned, as ``rollout_stats`` rows; gathering
        starts afresh. Call it off the event loop: binning is numpy work."""
        with self._lock:
            counts, self._counts = self._counts, {}
        rows = []
        for (deployment, version, role), c in counts.items():
            latency = np.bincount(np.searchsorted(LATENCY_EDGES_MS, np.asarray(c.latencies), side="right"))
            scores = np.bincount(score_bins(np.concatenate(c.scores))) if c.scores else np.zeros(0, np.int64)
            stats: dict[str, Any] = {
                "latency": {str(i): int(n) for i, n in enumerate(latency) if n},
                "scores": {str(i): int(n) for i, n in enumerate(scores) if n},
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
                    "requests": len(c.latencies),
                    "errors": c.errors,
                    "stats": stats,
                }
            )
        return rows

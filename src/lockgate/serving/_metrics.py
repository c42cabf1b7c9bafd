"""Prometheus metrics of the inference server, correct with several worker processes.

With several workers every process writes its samples to memory-mapped files in a shared
folder (prometheus_client's multiprocess mode) and ``/metrics`` on any worker sums them, so a
scrape that lands on one worker still sees every worker's requests. A single worker keeps
them in memory.

``lockgate_worker_requests_total`` counts the requests each worker process answered (label
``pid``), so a scrape shows how the kernel spread connections over the workers.

Label children are cached per label tuple: ``labels()`` validates and hashes its arguments
on every call, which is measurable at thousands of requests per second.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client import multiprocess as mp

__all__ = ["CONTENT_TYPE", "ServerMetrics", "enable_multiprocess", "mark_dead"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SCORE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))


def enable_multiprocess(folder: str) -> None:
    """Put this process's metrics in ``folder``, shared with the other workers (call before
    any :class:`ServerMetrics` is made)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def mark_dead(pid: int, folder: str) -> None:
    """Drop a finished worker's live gauges (queue depth, model info) from the sums."""
    mp.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]


class ServerMetrics:
    """The server's metrics in their own registry (so tests can build several servers)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.latency = Histogram(
            "lockgate_request_duration_seconds",
            "Time from a request's arrival to its response, by deployment and endpoint.",
            ["deployment", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "lockgate_requests",
            "Requests answered, by deployment, model version and HTTP status code.",
            ["deployment", "model_version", "code"],
            registry=r,
        )
        self.errors = Counter(
            "lockgate_request_errors",
            "Requests answered with an error status, by deployment and error code.",
            ["deployment", "code", "error"],
            registry=r,
        )
        self.batch_size = Histogram(
            "lockgate_batch_size",
            "Rows per model call after dynamic batching.",
            ["deployment", "model_version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "lockgate_queue_depth",
            "Rows waiting for a model call.",
            ["deployment", "model_version"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.features = Counter(
            "lockgate_feature_values",
            "Feature values looked up for entity requests, by status (fresh, stale, missing, default).",
            ["deployment", "status"],
            registry=r,
        )
        self.scores = Histogram(
            "lockgate_prediction_score",
            "Predicted scores (a binary classifier's positive-class probability, else the top probability).",
            ["deployment", "model_version"],
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "lockgate_model_info",
            "The model versions each deployment serves (value 1), with their runtime.",
            ["deployment", "model", "model_version", "runtime"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.worker_requests = Counter(
            "lockgate_worker_requests",
            "Requests answered by each worker process, by process id.",
            ["pid"],
            registry=r,
        )
        self._worker = self.worker_requests.labels(str(os.getpid()))
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, deployment: str, endpoint: str, version: str, code: int, seconds: float) -> None:
        self._child(self.latency, deployment, endpoint).observe(seconds)
        self._child(self.requests, deployment, version, str(code)).inc()
        self._worker.inc()

    def error(self, deployment: str, code: int, error: str) -> None:
        self._child(self.errors, deployment, str(code), error).inc()

    def batch(self, deployment: str, version: str, rows: int) -> None:
        self._child(self.batch_size, deployment, version).observe(rows)

    def depth(self, deployment: str, version: str, rows: int) -> None:
        self._child(self.queue_depth, deployment, version).set(rows)

    def feature_statuses(self, deployment: str, counts: dict[str, int]) -> None:
        for status, n in counts.items():
            if n:
                self._child(self.features, deployment, status).inc(n)

    def score(self, deployment: str, version: str, scores: Sequence[float] | np.ndarray[Any, Any]) -> None:
        child = self._child(self.scores, deployment, version)
        arr = np.asarray(scores, dtype=np.float64).reshape(-1)
        arr = arr[~np.isnan(arr)]  # a custom model's NaN falls in no bucket (and would poison the sum)
        if arr.size <= 4:
            for s in arr.tolist():
                child.observe(s)
            return
        # One increment per bucket instead of one observe per row: a 10,000-row request would
        # otherwise spend milliseconds here.
        bounds = np.asarray(child._upper_bounds)
        counts = np.bincount(np.searchsorted(bounds, arr, side="left"), minlength=len(bounds))
        for i, n in enumerate(counts.tolist()):
            if n:
                child._buckets[i].inc(n)
        child._sum.inc(float(arr.sum()))

    def serving(self, deployment: str, model: str, version: str, runtime: str, on: bool) -> None:
        child = self._child(self.model_info, deployment, model, version, runtime)
        child.set(1 if on else 0)

    def render(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))

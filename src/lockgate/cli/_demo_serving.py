"""The demo's serving chapter: deploy the champion, serve it, send a burst, read the log.

The server is a real ``lockgate serve`` process on a free loopback port, driven over HTTP
keep-alive connections from a few client threads, as a user's traffic would be.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group, RenderableType
from rich.table import Table

from lockgate.cli._demo_server import call, start_server, stop_server, wait_ready
from lockgate.cli._output import table
from lockgate.workspace import Workspace

__all__ = ["serving_chapter"]


@dataclass
class _Load:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, endpoint: str, seconds: float, status: int) -> None:
        with self.lock:
            self.latencies.setdefault(endpoint, []).append(seconds)
            self.statuses[status] = self.statuses.get(status, 0) + 1


def _v2_body(metadata: dict[str, Any], record: dict[str, Any], names: Sequence[str]) -> dict[str, Any]:
    inputs = metadata["inputs"]
    if len(inputs) == 1 and inputs[0]["name"] == "input":
        data = [float(record[n]) for n in names]
        return {"inputs": [{"name": "input", "shape": [1, len(names)], "datatype": "FP64", "data": data}]}
    return {
        "inputs": [
            {"name": i["name"], "shape": [1], "datatype": i["datatype"], "data": [record[i["name"]]]} for i in inputs
        ]
    }


def _burst(
    address: str,
    jobs: list[tuple[str, str, dict[str, Any]]],
    threads: int,
) -> tuple[_Load, float]:
    load = _Load()
    host, port = address.split(":")
    chunks = [jobs[i::threads] for i in range(threads)]

    def client(work: list[tuple[str, str, dict[str, Any]]]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        for endpoint, path, body in work:
            started = time.perf_counter()
            status, _ = call(conn, "POST", path, body)
            load.add(endpoint, time.perf_counter() - started, status)
        conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return load, time.perf_counter() - started


def _batch_sizes(metrics: str) -> tuple[float, int]:
    """Mean rows per model call and the largest bucket reached, from the batch-size histogram."""
    count = total = 0.0
    largest = 1
    previous = 0.0
    for line in metrics.splitlines():
        if line.startswith("lockgate_batch_size_count"):
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_batch_size_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lockgate_batch_size_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            value = float(line.rsplit(" ", 1)[1])
            if bound != "+Inf" and value > previous:
                largest = int(float(bound))
            previous = value
    return (total / count if count else 0.0), largest


def serving_chapter(
    ws: Workspace, entities: list[dict[str, Any]], *, now: datetime, requests: int = 1200, threads: int = 8
) -> tuple[dict[str, Any], Group, str]:
    """Deploy ``models:/fraud@champion`` as ``fraud-api``, serve it, and send ``requests``
    requests split over the V2, records and entity endpoints. Feature ages are judged at
    ``now`` (the demo data's end), so the story reads the same whatever day it runs."""
    deployment = ws.deployments.create("fraud-api", "models:/fraud@champion", settings={"max_wait_ms": 2})
    mv = ws.models.get("models:/fraud@champion")
    example = ws.models.input_example(mv.uri)
    assert example is not None
    records = example.to_pylist()
    names = [c["name"] for c in mv.signature["inputs"]]
    process, address, reader = start_server(ws.home, now)
    try:
        wait_ready(address)
        host, port = address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        _, metadata = call(conn, "GET", "/v2/models/fraud-api")
        _, one = call(conn, "POST", "/v1/endpoints/fraud-api/predict", {"entities": entities[:1]})
        conn.close()
        jobs: list[tuple[str, str, dict[str, Any]]] = []
        for i in range(requests):
            record = records[i % len(records)]
            kind = i % 3
            if kind == 0:
                jobs.append(("v2 infer", "/v2/models/fraud-api/infer", _v2_body(metadata, record, names)))
            elif kind == 1:
                jobs.append(("json records", "/v1/endpoints/fraud-api/predict", {"records": [record]}))
            else:
                jobs.append(
                    ("json entities", "/v1/endpoints/fraud-api/predict", {"entities": [entities[i % len(entities)]]})
                )
        load, seconds = _burst(address, jobs, threads)
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        _, metrics = call(conn, "GET", "/metrics")
        conn.close()
    finally:
        stop_server(process, reader)
    mean_batch, largest = _batch_sizes(metrics if isinstance(metrics, str) else "")
    rows = []
    for endpoint, values in load.latencies.items():
        arr = np.asarray(values) * 1000
        rows.append((endpoint, len(values), f"{np.percentile(arr, 50):.2f} ms", f"{np.percentile(arr, 99):.2f} ms"))
    latency = table(None, ["endpoint", "requests", "p50", "p99"], rows)
    log_rows, log_lines = _prediction_log(ws)
    grid = Table.grid(padding=(0, 2))
    grid.add_row("deployed", f"fraud-api → {mv.uri} (follows models:/fraud@champion), revision {deployment.revision}")
    grid.add_row("server", f"lockgate serve on http://{address}; runtime {metadata.get('platform', '?')}")
    statuses = ", ".join(f"{n} x HTTP {code}" for code, n in sorted(load.statuses.items()))
    grid.add_row(
        "burst",
        f"{requests} requests over {threads} keep-alive connections in {seconds:.2f} s "
        f"({requests / seconds:,.0f} req/s): {statuses}",
    )
    grid.add_row("batching", f"{mean_batch:.1f} rows per model call on average, up to {largest}")
    if isinstance(one, dict) and one.get("scores"):
        grid.add_row(
            "one lookup",
            f"{json.dumps(entities[0])} → score {one['scores'][0]:.4f}, features "
            f"{', '.join(one.get('feature_status', []))}, request …{str(one.get('request_id', ''))[-8:]}",
        )
    else:
        grid.add_row("one lookup", f"{json.dumps(entities[0])} → {one}")
    grid.add_row("prediction log", f"{log_rows} rows in {ws.settings.resolved_prediction_log}/deployment=fraud-api/")
    parts: list[RenderableType] = [grid, latency]
    if log_lines:
        parts.append(table(None, ["request", "endpoint", "model", "score", "latency"], log_lines))
    ok = load.statuses.get(200, 0)
    summary = f"{requests / seconds:,.0f} req/s, {ok}/{requests} answered 200, {log_rows} predictions logged"
    return {"address": address, "ok": ok}, Group(*parts), summary


def _prediction_log(ws: Workspace) -> tuple[int, list[tuple[str, str, str, str, str]]]:
    import duckdb

    root = Path(ws.settings.resolved_prediction_log)
    if not any(root.glob("deployment=fraud-api/*/*.parquet")):
        return 0, []
    pattern = str(root / "deployment=fraud-api" / "*" / "*.parquet")
    con = duckdb.connect()
    try:
        source = f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
        (count,) = con.execute(f"SELECT count(*) FROM {source}").fetchone() or (0,)
        picked = con.execute(
            f"SELECT request_id, endpoint, model || '/' || model_version, score, latency_ms FROM {source} "
            "ORDER BY ts DESC, request_id LIMIT 3"
        ).fetchall()
    finally:
        con.close()
    lines = [(str(r)[-8:], str(e), str(m), f"{s:.4f}", f"{lat:.2f} ms") for r, e, m, s, lat in picked]
    return int(count), lines

"""The demo's rollout chapter: a retrained model goes out as a canary under live traffic and
the analysis promotes it; a model with a training bug is rolled back by the same analysis;
an async job is answered later; a Parquet file is scored in batch, as a tracked run.

Traffic comes from client threads on keep-alive connections for as long as the canaries
run, so the analysis judges real requests, as it would in production.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table

from lockgate.cli._demo_server import call, start_server, stop_server, wait_ready
from lockgate.cli._output import table
from lockgate.errors import UnavailableError
from lockgate.serving import batch_predict
from lockgate.workspace import Workspace

__all__ = ["RolloutPlan", "rollout_chapter"]

INTERVAL = "2s"
STEPS = (25, 50, 100)
POLICY = {"min_requests": 60, "failure_limit": 1}


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutPlan:
    """What the chapter rolls out and scores."""

    good: str  # the retrained candidate, models:/fraud/N
    bad: str  # the candidate with a training bug
    bad_story: str  # what is wrong with it, in a few words
    records: list[dict[str, Any]]  # request rows for live traffic
    entities: list[dict[str, Any]]  # entity rows for the async job
    batch_input: Path  # a Parquet file to score in batch
    batch_output: Path
    now: datetime


@dataclass
class _Traffic:
    """Client threads posting one-row records to ``fraud-api`` until stopped."""

    address: str
    records: list[dict[str, Any]]
    threads: int = 3
    answered: dict[int, int] = field(default_factory=dict)
    versions: dict[int, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, args=(n,), daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(10)

    def _run(self, offset: int) -> None:
        host, port = self.address.split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        i = offset
        while not self._stop.is_set():
            status, answer = call(conn, "POST", "/v1/endpoints/fraud-api/predict", {"records": [self.records[i]]})
            i = (i + self.threads) % len(self.records)
            with self._lock:
                self.answered[status] = self.answered.get(status, 0) + 1
                if status == 200 and isinstance(answer, dict):
                    version = int(answer["model_version"])
                    self.versions[version] = self.versions.get(version, 0) + 1
        conn.close()


def _run_canary(ws: Workspace, candidate: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Start a canary of ``candidate`` and wait for the analysis to end it; its events."""
    ws.rollouts.canary("fraud-api", candidate, steps=STEPS, interval=INTERVAL, policy=POLICY)
    deadline = time.monotonic() + timeout
    while ws.deployments.get("fraud-api").rollout is not None:
        if time.monotonic() > deadline:
            ws.rollouts.rollback("fraud-api", reason="the demo's canary took too long")
            raise UnavailableError(f"the canary of {candidate} was not decided within {timeout:.0f} s")
        time.sleep(0.2)
    events = list(reversed(ws.rollouts.status("fraud-api").events))
    start = max(i for i, e in enumerate(events) if e["event"] == "started")
    return events[start:]


def _decision_rows(label: str, events: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    rows = []
    t0 = events[0]["at"]
    for e in events:
        when = f"+{(e['at'] - t0) / 1000:.1f}s"
        if e["event"] == "started":
            rows.append((label, when, "started", f"{e['percent']:g}% of traffic, steps {'/'.join(map(str, STEPS))}"))
        elif e["event"] == "analysis":
            verdict = e["verdict"]
            canary, stable = verdict["canary"], verdict["stable"]
            figures = f"{canary['requests']} vs {stable['requests']} requests"
            psi = next((c for c in verdict["checks"] if c["name"] == "score_psi"), None)
            if psi is not None and psi["canary"] is not None:
                figures += f", PSI {psi['canary']:.3f}"
            rows.append((label, when, f"analysis → {e['action']}", f"{figures}: {verdict['reason']}"[:110]))
        elif e["event"] == "advanced":
            rows.append((label, when, "advanced", f"now {e['percent']:g}% of traffic"))
        elif e["event"] == "promoted":
            rows.append((label, when, "promoted", e.get("how", "")))
        elif e["event"] == "rolled_back":
            rows.append((label, when, "rolled back", e.get("reason", "")))
    return rows


def rollout_chapter(ws: Workspace, plan: RolloutPlan) -> tuple[Group, str]:
    """Canary ``plan.bad`` (rolled back) then ``plan.good`` (promoted) on ``fraud-api`` under
    live traffic from a real server; then an async job and a batch scoring run."""
    champion_before = ws.models.get("models:/fraud@champion").uri
    process, address, reader = start_server(ws.home, plan.now, "--job-workers", "2")
    traffic = _Traffic(address, plan.records)
    try:
        wait_ready(address)
        traffic.start()
        bad = _run_canary(ws, plan.bad)
        good = _run_canary(ws, plan.good)
        time.sleep(1.0)  # the server polls the promotion: the last requests reach the new champion
        traffic.stop()
        job_id, job = _submit_and_wait(address, plan.entities)
    finally:
        traffic.stop()
        stop_server(process, reader)
    scored = batch_predict(ws, "models:/fraud@champion", plan.batch_input, plan.batch_output)
    champion_after = ws.models.get("models:/fraud@champion").uri
    promoted = any(e["event"] == "promoted" for e in good)
    rolled_back = any(e["event"] == "rolled_back" for e in bad)

    grid = Table.grid(padding=(0, 2))
    grid.add_row("candidates", f"{plan.good} (retrained on the new data); {plan.bad} ({plan.bad_story})")
    grid.add_row("analysis", f"every {INTERVAL}: error rate, p99 latency and score PSI against the stable version")
    served = ", ".join(f"v{v}: {n}" for v, n in sorted(traffic.versions.items()))
    statuses = ", ".join(f"{n} x HTTP {code}" for code, n in sorted(traffic.answered.items()))
    grid.add_row("live traffic", f"{sum(traffic.answered.values())} requests ({statuses}); answered by {served}")
    grid.add_row("champion", f"{champion_before} → {champion_after}")
    results = job.get("result") or {}
    grid.add_row(
        "async job",
        f"POST /v1/endpoints/fraud-api/jobs → 202 {job_id[:12]}…; {job.get('status')} with "
        f"{len(results.get('scores', []))} scores from {results.get('model', '?')}/{results.get('model_version', '?')}",
    )
    grid.add_row(
        "batch scoring",
        f"{scored.rows:,} rows of {plan.batch_input.name} in {scored.seconds:.2f} s "
        f"({scored.rows_per_second:,.0f} rows/s, {scored.runtime}) → {plan.batch_output.name}, "
        f"run {scored.run_id[:8]} with lineage",
    )
    parts: list[RenderableType] = [grid]
    rows = _decision_rows(plan.bad.rsplit("/", 1)[-1], bad) + _decision_rows(plan.good.rsplit("/", 1)[-1], good)
    parts.append(table(None, ["version", "when", "decision", "why"], [(f"v{r[0]}", *r[1:]) for r in rows]))
    summary = (
        f"{plan.bad} rolled back, {plan.good} promoted by the analysis"
        if promoted and rolled_back
        else "the canaries did not end as expected (see lockgate deploy status fraud-api)"
    )
    return Group(*parts), summary


def _submit_and_wait(address: str, entities: list[dict[str, Any]], timeout: float = 30.0) -> tuple[str, dict[str, Any]]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        status, submitted = call(conn, "POST", "/v1/endpoints/fraud-api/jobs", {"entities": entities})
        if status != 202 or not isinstance(submitted, dict):
            raise UnavailableError(f"the async job was refused: HTTP {status} {submitted}")
        job_id = str(submitted["id"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, job = call(conn, "GET", f"/v1/jobs/{job_id}")
            if isinstance(job, dict) and job.get("status") in ("succeeded", "failed"):
                return job_id, job
            time.sleep(0.1)
        raise UnavailableError(f"async job {job_id} did not finish within {timeout:.0f} s")
    finally:
        conn.close()

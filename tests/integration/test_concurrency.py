"""Several processes writing to one workspace at once: nothing lost, nothing locked out.

Each worker is a real process (``python -c``) that opens the workspace itself, says "ready",
waits for the go signal so all of them write at the same moment, and reports what it did as
JSON on its last line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import lockgate as lg
from lockgate.store import schema as t

WORKERS = 4
METRICS_PER_WORKER = 500
VERSIONS_PER_WORKER = 5

_WORKER = r"""
import json, os, sys, time, traceback
home, database_url, go, worker, metrics, versions = sys.argv[1:7]
errors, result = [], {}
try:
    import lockgate as lg
    ws = lg.Workspace.open(home, database_url=database_url or None)
    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.005)
    with ws.start_run(f"worker-{worker}", experiment="concurrency") as run:
        for step in range(int(metrics)):
            run.log_metric("loss", 1.0 / (step + 1), step=step)  # one transaction each
    result["run"] = run.id
    result["versions"] = [
        ws.models.register({"worker": worker, "i": i}, name="fraud").version for i in range(int(versions))
    ]
    ws.close()
except BaseException:
    errors.append(traceback.format_exc())
print(json.dumps({"errors": errors, **result}), flush=True)
"""


def _run_workers(home: Path, database_url: str | None, tmp_path: Path) -> list[dict[str, Any]]:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(home),
                database_url or "",
                str(go),
                str(i),
                str(METRICS_PER_WORKER),
                str(VERSIONS_PER_WORKER),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WORKERS)
    ]
    try:
        for proc in procs:  # every worker has opened the workspace before anyone writes
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", (line, proc.stderr.read() if proc.stderr else "")
        go.touch()
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        report = json.loads(out.strip().splitlines()[-1])
        assert "database is locked" not in err + out
        assert report["errors"] == [], report["errors"]
        assert proc.returncode == 0, err
        assert err == "", err  # no warnings, no tracebacks
        results.append(report)
    return results


def _assert_every_metric_is_there(ws: lg.Workspace, results: list[dict[str, Any]]) -> None:
    run_ids = [r["run"] for r in results]
    assert len(set(run_ids)) == WORKERS
    with ws.db.read() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(t.metrics)).scalar_one()
    assert total == WORKERS * METRICS_PER_WORKER
    for run_id in run_ids:
        history = ws.runs.metric_history(run_id, "loss")
        assert [m.step for m in history] == list(range(METRICS_PER_WORKER))
        record = ws.runs.get(run_id)
        assert record.status is lg.RunStatus.FINISHED
        assert record.metrics == {"loss": 1.0 / METRICS_PER_WORKER}


def _assert_versions_have_no_gaps(ws: lg.Workspace, results: list[dict[str, Any]]) -> None:
    numbers = sorted(v for r in results for v in r["versions"])
    assert numbers == list(range(1, WORKERS * VERSIONS_PER_WORKER + 1))
    for r in results:  # each process saw its own versions in increasing order
        assert r["versions"] == sorted(r["versions"])
    assert [v.version for v in ws.models.versions("fraud")] == numbers[::-1]


def _assert_the_audit_chain_holds(ws: lg.Workspace) -> None:
    report = ws.audit.verify()
    assert report.ok, report.reason
    # created + finished per run, one per registered version: none lost, none interleaved badly
    assert report.head_seq == WORKERS * (2 + VERSIONS_PER_WORKER)


@pytest.mark.slow
def test_four_processes_write_to_one_fresh_sqlite_workspace_at_once(tmp_path: Path) -> None:
    home = tmp_path / "ws"  # not created yet: the workers also race to create and migrate it
    results = _run_workers(home, None, tmp_path)
    with lg.Workspace.open(home) as ws:
        _assert_every_metric_is_there(ws, results)
        _assert_versions_have_no_gaps(ws, results)
        _assert_the_audit_chain_holds(ws)


@pytest.mark.slow
@pytest.mark.postgres
def test_four_processes_write_to_one_postgres_database_at_once(tmp_path: Path, pg_url: str) -> None:
    home = tmp_path / "ws"
    lg.Workspace.open(home, database_url=pg_url, upgrade=True).close()  # schema only: no audit event yet
    results = _run_workers(home, pg_url, tmp_path)
    with lg.Workspace.open(home, database_url=pg_url) as ws:
        _assert_every_metric_is_there(ws, results)
        _assert_versions_have_no_gaps(ws, results)
        _assert_the_audit_chain_holds(ws)

"""A training process killed mid-run: what it logged stays, and the run shows as crashed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

import lockgate as lg
from lockgate.clock import now_millis
from lockgate.store import schema as t

_CHILD = r"""
import sys
import time
import lockgate as lg
ws = lg.Workspace.open(sys.argv[1], database_url=sys.argv[2] or None)
run = ws.start_run("doomed", experiment="crash")
print(run.id, flush=True)
step = 0
while True:
    run.log_metric("loss", 1.0 / (step + 1), step=step)
    print(step, flush=True)  # printed only after log_metric returned
    if step == 40:
        print("ready", flush=True)
    step += 1
"""


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str | None]:
    home = tmp_path / "ws"
    url: str | None = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
    lg.Workspace.open(home, database_url=url, upgrade=True).close()
    return home, url


def test_a_killed_process_keeps_every_metric_it_logged_and_its_run_shows_crashed(
    database: tuple[Path, str | None],
) -> None:
    home, url = database
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(home), url or ""],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    try:
        run_id = child.stdout.readline().strip()
        lines = []
        for line in child.stdout:
            if line.strip() == "ready":
                break
            lines.append(line)
        else:
            pytest.fail(f"the child died before it was ready: {child.stderr.read() if child.stderr else ''}")
        with lg.Workspace.open(home, database_url=url) as ws:
            assert ws.runs.get(run_id).status is lg.RunStatus.RUNNING  # alive: not reaped
        os.kill(child.pid, signal.SIGKILL)
        # Read through the same buffered file the loop above used: communicate() reads the raw
        # pipe and would drop lines already sitting in that buffer.
        rest = child.stdout.read()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL
    printed = [int(s) for s in [*lines, *rest.splitlines()] if s.strip().isdigit()]
    assert printed == list(range(len(printed)))
    last_confirmed = printed[-1]
    assert last_confirmed >= 40

    with lg.Workspace.open(home, database_url=url) as ws:
        steps = [m.step for m in ws.runs.metric_history(run_id, "loss")]
        # Every metric whose log_metric returned is there (one more may have committed unprinted).
        assert steps[: last_confirmed + 1] == list(range(last_confirmed + 1))
        assert len(steps) - 1 - last_confirmed in (0, 1)
        crashed = ws.runs.search("attributes.status = 'CRASHED'", experiment="crash")
        assert [r.id for r in crashed] == [run_id]
        record = ws.runs.get(run_id)
        assert record.status is lg.RunStatus.CRASHED
        assert record.end_time is not None
        assert record.metrics["loss"] == 1.0 / (steps[-1] + 1)
        events = ws.audit.events(object_kind="run", object_id=run_id)
        assert (events[0].action, events[0].actor) == ("run.crashed", "service:lockgate")
        report = ws.audit.verify()
        assert report.ok, report.reason
        assert ws.runs.reap() == []  # already reaped: nothing more to do


def test_runs_on_other_hosts_are_reaped_only_when_their_heartbeat_is_stale(ws: lg.Workspace) -> None:
    with ws.start_run("mine") as mine:
        stale = ws.start_run("stale")
        fresh = ws.start_run("fresh")
        hour_ago = now_millis() - 3_600_000
        with ws.db.write() as conn:
            conn.execute(
                sa.update(t.runs).where(t.runs.c.id == stale.id).values(host="gpu-box-7", heartbeat_at=hour_ago)
            )
            conn.execute(sa.update(t.runs).where(t.runs.c.id == fresh.id).values(host="gpu-box-8"))
        statuses = {r.name: r.status for r in ws.runs.list()}
        assert statuses == {
            "mine": lg.RunStatus.RUNNING,  # this very process
            "stale": lg.RunStatus.CRASHED,
            "fresh": lg.RunStatus.RUNNING,
        }
        fresh.end()
    assert ws.runs.get(mine.id).status is lg.RunStatus.FINISHED


def test_a_run_that_logs_nothing_for_a_while_still_shows_it_is_alive(
    ws: lg.Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lockgate.tracking._runs._HEARTBEAT_EVERY_MS", 50)

    def heartbeat_at(run_id: str) -> int:
        with ws.db.read() as conn:
            return int(conn.execute(sa.select(t.runs.c.heartbeat_at).where(t.runs.c.id == run_id)).scalar_one())

    with ws.start_run("quiet") as run:  # a long epoch: nothing logged, yet the heartbeat moves
        first = heartbeat_at(run.id)
        deadline = time.monotonic() + 5
        while heartbeat_at(run.id) == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert heartbeat_at(run.id) > first
    ended = heartbeat_at(run.id)
    time.sleep(0.2)
    assert heartbeat_at(run.id) == ended  # an ended run stops beating


@pytest.mark.parametrize(("tail", "status"), [("raise SystemExit(0)", "FINISHED"), ("1 / 0", "FAILED")])
def test_a_run_left_open_ends_with_the_script(tmp_path: Path, tail: str, status: str) -> None:
    script = (
        "import sys, lockgate as lg\n"
        "ws = lg.Workspace.open(sys.argv[1])\n"
        "run = ws.start_run('forgotten', experiment='exit')\n"
        "print(run.id, flush=True)\n" + tail + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "ws")], capture_output=True, text=True, timeout=60, check=False
    )
    run_id = done.stdout.strip()
    with lg.Workspace.open(tmp_path / "ws") as ws:
        assert ws.runs.get(run_id).status == status

"""Long steps: checkpoints in the artifact store, preemption (SIGTERM), killed workers,
timeouts. The interrupted runs must end exactly where uninterrupted ones do."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.pipelines import PipelineFailed, StepContext, load_pipeline, run_pipeline, step


def _signal_when_paused(pid_file: Path, signum: signal.Signals) -> threading.Thread:
    """Send ``signum`` to the worker once the step has written its pid (it then waits)."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pid_file.exists() and pid_file.read_text():
                time.sleep(0.2)  # let the sleep start
                os.kill(int(pid_file.read_text()), signum)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _checkpoints(ws: lg.Workspace, run_id: str, node: str) -> list[str]:
    return [n for n in ws.artifacts.list_named(f"checkpoints/{run_id}/{node}") if n.endswith(".ckpt")]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["preempted", "killed"])
def test_an_interrupted_worker_is_run_again_from_its_latest_checkpoint(
    ws: lg.Workspace, project: Path, signum: signal.Signals
) -> None:
    flow = load_pipeline(f"{project / 'long.py'}:counting")
    pid_file = project / "worker.pid"
    watcher = _signal_when_paused(pid_file, signum)
    result = run_pipeline(ws, flow, params={"pid_file": str(pid_file), "pause_at": 3}, executor="local")
    watcher.join(timeout=5)
    out = result.output("count")
    assert out == {"total": sum(range(6)), "resumed_at": 3, "attempt": 2}  # ticks 0-2 were not redone
    step_run = ws.runs.get(result.step_run("count") or "")
    assert step_run.tags["lockgate.attempts"] == "2"
    assert step_run.tags["lockgate.restored_checkpoint"] == "3"
    why = step_run.tags["lockgate.attempt.1.error"]
    assert ("preempted" in why) if signum == signal.SIGTERM else ("lost" in why)
    kept = _checkpoints(ws, result.run_id, "count")
    assert len(kept) == 2  # keep_checkpoints=2: the last two of six
    assert kept[-1].rsplit("/", 1)[-1].startswith("00000006-")


def test_checkpoints_are_restored_by_a_resumed_pipeline_run_not_by_a_changed_step(
    ws: lg.Workspace, project: Path
) -> None:
    flow = load_pipeline(f"{project / 'long.py'}:counting")
    first = run_pipeline(ws, flow, params={"pid_file": "", "pause_at": -1}, executor="inline")
    assert first.output("count")["resumed_at"] == 0
    assert len(_checkpoints(ws, first.run_id, "count")) == 2
    # A new pipeline run has its own checkpoint space: it starts from scratch.
    second = run_pipeline(ws, flow, params={"pid_file": "", "pause_at": -1, "n": 7}, executor="inline")
    assert second.output("count")["resumed_at"] == 0


def test_a_step_past_its_timeout_fails_and_is_retried_then_the_run_fails(ws: lg.Workspace, project: Path) -> None:
    flow = load_pipeline(f"{project / 'long.py'}:slow_flow")
    started = time.monotonic()
    with pytest.raises(PipelineFailed) as failed:
        run_pipeline(ws, flow, params={"seconds": 60.0}, executor="local")
    assert time.monotonic() - started < 30  # two attempts cut at 0.5 s, not two of 60 s
    step_run = ws.runs.get(failed.value.result.step_run("slow") or "")
    assert "StepTimeout" in step_run.tags["lockgate.error"]
    assert "timeout of 0.5 s" in step_run.tags["lockgate.error"]
    assert step_run.tags["lockgate.attempts"] == "2"  # retries=1


def test_a_step_deaf_to_its_timeout_is_ended_from_outside(ws: lg.Workspace, project: Path) -> None:
    flow = load_pipeline(f"{project / 'long.py'}:stubborn_flow")
    started = time.monotonic()
    with pytest.raises(PipelineFailed) as failed:
        run_pipeline(ws, flow, params={"seconds": 120.0}, executor="local")
    assert time.monotonic() - started < 60  # 0.5 s timeout + 5 s grace, not the step's 120 s
    step_run = ws.runs.get(failed.value.result.step_run("stubborn") or "")
    assert "timeout of 0.5 s" in step_run.tags["lockgate.error"]
    assert step_run.status == lg.RunStatus.FAILED


def test_a_context_outside_a_pipeline_keeps_checkpoints_in_memory() -> None:
    @step
    def grow(n: int, ctx: StepContext) -> list[int]:
        state: list[int] = ctx.restore(default=[])
        while len(state) < n:
            state = ctx.checkpoint([*state, len(state)])
        return state

    assert grow(3) == [0, 1, 2]
    ctx = StepContext()
    ctx.checkpoint([0, 1])
    assert grow(4, ctx=ctx) == [0, 1, 2, 3]


def test_bad_step_options_are_refused_with_the_fix() -> None:
    with pytest.raises(lg.InvalidInputError, match="timeout must be a positive number of seconds"):
        step(timeout=0)(lambda: None)
    with pytest.raises(lg.InvalidInputError, match="keep_checkpoints must be 1 or more"):
        step(keep_checkpoints=0)(lambda: None)


def test_gc_removes_checkpoints_of_finished_runs_and_keeps_those_a_resume_needs(
    ws: lg.Workspace, project: Path
) -> None:
    flow = load_pipeline(f"{project / 'long.py'}:counting")
    finished = run_pipeline(ws, flow, params={"pid_file": "", "pause_at": -1}, executor="inline")
    assert len(_checkpoints(ws, finished.run_id, "count")) == 2
    failed = ws.start_run("interrupted")
    failed.end(lg.RunStatus.FAILED)  # a failed pipeline run: its checkpoints wait for --resume
    kept_name = f"checkpoints/{failed.id}/count/0123456789abcdef/00000001-{'0' * 64}.ckpt"
    ws.artifacts.put_named(kept_name, b"state")

    assert ws.gc(dry_run=True).checkpoints == 2
    assert len(_checkpoints(ws, finished.run_id, "count")) == 2
    assert ws.gc().checkpoints == 2
    assert _checkpoints(ws, finished.run_id, "count") == []
    assert ws.artifacts.list_named(f"checkpoints/{failed.id}") == [kept_name]

"""Long steps for the checkpoint, preemption and timeout tests.

``count`` counts to ``n`` one checkpointed tick at a time; at tick ``pause_at`` of its first
attempt it writes its pid to ``pid_file`` and waits to be signalled, so a test can preempt or
kill it at a known point.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lockgate.pipelines import StepContext, pipeline, step


@step(max_preemptions=2, keep_checkpoints=2)
def count(n: int, pid_file: str, pause_at: int, ctx: StepContext) -> dict[str, int]:
    state = ctx.restore(default={"tick": 0, "total": 0})
    resumed_at = state["tick"]
    for tick in range(state["tick"], n):
        if tick == pause_at and ctx.attempt == 1:
            Path(pid_file).write_text(str(os.getpid()))
            time.sleep(60)  # the test signals this worker now
        state = ctx.checkpoint({"tick": tick + 1, "total": state["total"] + tick})
    return {"total": state["total"], "resumed_at": resumed_at, "attempt": ctx.attempt}


@pipeline
def counting(n: int = 6, pid_file: str = "", pause_at: int = 3):
    return count(n, pid_file, pause_at)


@step(timeout=0.5, retries=1)
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@pipeline
def slow_flow(seconds: float = 5.0):
    return slow(seconds)


@step(timeout=0.5)
def stubborn(seconds: float) -> float:
    signal.signal(signal.SIGALRM, signal.SIG_IGN)  # like a step stuck in C code: deaf to its own timer
    time.sleep(seconds)
    return seconds


@pipeline
def stubborn_flow(seconds: float = 30.0):
    return stubborn(seconds)

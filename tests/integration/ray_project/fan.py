"""Two independent steps, a step joining them, then a long checkpointed step.

``meet``: a folder where ``left`` and ``right`` wait for each other (up to 20 s) before they
finish, so they overlap whenever the executor runs them side by side, however unevenly its
workers start. ``pid_file``: where the first attempt of ``endure`` writes its pid before it
waits to be killed. Neither changes any step's output.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa
from helpers import meet_up, squares, where

from lockgate import StepContext, pipeline, step


@step
def left(n: int, meet: str) -> pa.Table:
    where(__file__)
    meet_up(meet, "left", "right")
    return pa.table({"x": list(range(n)), "square": squares(n)})


@step
def right(n: int, meet: str) -> dict[str, float]:
    where(__file__)
    meet_up(meet, "right", "left")
    return {"total": float(sum(squares(n)))}


@step
def join(table: pa.Table, summary: dict[str, float]) -> pa.Table:
    where(__file__)
    return table.append_column("share", pa.array([s / summary["total"] for s in table["square"].to_pylist()]))


@step(max_preemptions=2)
def endure(table: pa.Table, pid_file: str, ctx: StepContext) -> dict[str, float]:
    where(__file__)
    state = ctx.restore(default={"rows": 0})
    if not state["rows"]:
        ctx.checkpoint({"rows": table.num_rows})
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
            time.sleep(60)  # the test kills this worker here
    return {"rows": float(table.num_rows)}


@pipeline
def fan(n: int = 10, meet: str = "", pid_file: str = ""):
    return endure(join(left(n, meet), right(n, meet)), pid_file)

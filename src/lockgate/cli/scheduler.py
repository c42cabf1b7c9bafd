"""``lockgate scheduler``: the loop that fires due triggers and runs their pipelines."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from lockgate.cli._context import state
from lockgate.cli._output import JsonOpt, short
from lockgate.clock import to_iso
from lockgate.errors import InvalidInputError
from lockgate.pipelines import EXECUTORS, Scheduler

__all__ = ["app"]

app = typer.Typer(
    help="The trigger scheduler: run it (one at a time per workspace), or see who runs it.\n\n"
    "Example: lockgate scheduler run --poll 30"
)


@app.command()
def run(
    ctx: typer.Context,
    once: Annotated[
        bool, typer.Option("--once", help="Evaluate the triggers once and exit (for system cron).")
    ] = False,
    executor: Annotated[str, typer.Option(help=f"Where steps run: {', '.join(EXECUTORS)}.")] = "local",
    poll: Annotated[float, typer.Option(help="Seconds between evaluations at most.")] = 30.0,
) -> None:
    """Fire due triggers and run waiting firings until SIGTERM or Ctrl-C.

    Only one scheduler per workspace holds the lease; another one waits for it. After
    downtime, a missed schedule fires once.
    """
    if poll <= 0:
        raise InvalidInputError(f"--poll must be a positive number of seconds, not {poll:g}")
    if executor not in EXECUTORS:
        raise InvalidInputError(f"executor '{executor}' is unknown; use one of {', '.join(EXECUTORS)}")
    st = state(ctx)
    scheduler = Scheduler(
        st.workspace(), executor=executor, poll_s=poll, lease_ttl_s=max(60.0, 3 * poll), on_event=st.output.info
    )
    if once:
        _once(ctx, scheduler)
        return
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        st.output.info(f"received {signal.Signals(signum).name}; stopping")
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        scheduler.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _once(ctx: typer.Context, scheduler: Scheduler) -> None:
    out = state(ctx).output
    evaluation = scheduler.run_once()
    if evaluation is None:
        lease = scheduler.lease()
        holder = lease.holder if lease else "another scheduler"
        out.info(f"the scheduler lease is held by {holder}; it evaluates the triggers, so this run does nothing")
        return
    ran = ", ".join(f"{f.trigger}#{f.id} {f.status} {short(f.run_id)}".rstrip() for f in evaluation.ran)
    summary = f"fired {len(evaluation.fired)}, skipped {len(evaluation.skipped)}, ran {len(evaluation.ran)}"
    out.info(summary + (f": {ran}" if ran else ""))


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Which scheduler holds the lease, and until when."""
    st = state(ctx)
    lease = Scheduler(st.workspace()).lease()
    if as_json:
        st.output.json({"running": lease is not None, "lease": lease.to_dict() if lease else None})
        return
    if lease is None:
        message = "no scheduler is running; start one: lockgate scheduler run"
    else:
        message = f"scheduler {lease.holder} holds the lease until {to_iso(lease.expires_at)} (renewed while it runs)"
    st.output.out.print(message, soft_wrap=True, markup=False, highlight=False)

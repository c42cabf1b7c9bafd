"""``lockgate audit``: read and verify the tamper-evident audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli._context import state
from lockgate.cli._output import table
from lockgate.clock import to_iso
from lockgate.errors import AuditChainBroken

__all__ = ["app"]

app = typer.Typer(help="The audit log: verify, log.\n\nExample: lockgate audit verify")


@app.command()
def verify(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Check every event's hash, link and seal; exit 1 naming the first broken event."""
    st = state(ctx)
    report = st.workspace().audit.verify()
    if as_json:
        st.output.json(report.to_dict())
        if not report.ok:
            raise typer.Exit(1)
        return
    if not report.ok:
        raise AuditChainBroken(
            f"audit event {report.first_broken_seq} does not verify: {report.reason}; "
            "restore the database from a backup and find who changed it with: lockgate audit log"
        )
    st.output.print(f"audit log ok: {report.events_checked} events verified, head at {report.head_seq}")


@app.command("log")
def log(
    ctx: typer.Context,
    object_ref: Annotated[
        str | None, typer.Option("--object", help="Only events about KIND:ID, e.g. model:fraud.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Newest events to show.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The newest audit events: who did what to which object."""
    st = state(ctx)
    kind, _, ident = (object_ref or "").partition(":")
    events = st.workspace().audit.events(object_kind=kind or None, object_id=ident or None, limit=limit)
    if as_json:
        st.output.json([e.to_dict() for e in events])
        return
    rows = [
        (e.seq, (to_iso(e.ts) or "")[:19].replace("T", " "), e.actor, e.action, f"{e.object_kind}:{e.object_id[:40]}")
        for e in events
    ]
    st.output.print(table("audit log (newest first)", ["seq", "time (UTC)", "actor", "action", "object"], rows))

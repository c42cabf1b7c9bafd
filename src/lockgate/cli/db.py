"""``lockgate db``: the metadata database's schema."""

from __future__ import annotations

from typing import Annotated

import typer

from lockgate.cli._context import state
from lockgate.config import Settings
from lockgate.store import Database
from lockgate.store import migrate as migrations
from lockgate.store.database import redact_url

__all__ = ["app"]

app = typer.Typer(help="The metadata database: upgrade, current.\n\nExample: lockgate db upgrade")


def _db(ctx: typer.Context) -> Database:
    return Database(Settings.load(home=state(ctx).home).resolved_database_url)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the metadata database to this lockgate's schema (run after upgrading lockgate)."""
    db = _db(ctx)
    before = migrations.current_revision(db)
    after = migrations.upgrade(db, revision)
    st = state(ctx)
    if before == after:
        st.output.print(f"{redact_url(db.url)} is already at schema {after}")
    else:
        st.output.print(f"upgraded {redact_url(db.url)} from {before or 'empty'} to {after}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the one this lockgate needs."""
    db = _db(ctx)
    state(ctx).output.print(
        f"database {redact_url(db.url)}: schema {migrations.current_revision(db) or 'none'}; "
        f"this lockgate needs {migrations.head_revision()}"
    )

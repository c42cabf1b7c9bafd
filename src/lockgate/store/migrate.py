"""Schema migrations, run through Alembic with an open connection.

Alembic is imported when a migration question is asked, not with lockgate: a process that
only logs metrics should not pay for it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.errors import InvalidInputError, SchemaOutdatedError
from lockgate.store.database import Database, redact_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["check_current", "current_revision", "head_revision", "known_revisions", "upgrade"]

_MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


@functools.cache  # the scripts ship with this lockgate; they do not change while it runs
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.read() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to ``revision``; returns the revision it ended at."""
    from alembic import command
    from alembic.util import CommandError

    _refuse_newer(db)
    if revision != "head" and revision not in known_revisions():
        known = ", ".join(sorted(known_revisions()))
        raise InvalidInputError(f"schema revision '{revision}' is unknown to this lockgate; use one of {known} or head")
    cfg = _config()
    try:
        with db.write() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except CommandError as exc:
        raise InvalidInputError(f"cannot migrate {redact_url(db.url)} to {revision} ({exc})") from None
    return current_revision(db) or ""


def _refuse_newer(db: Database) -> None:
    current = current_revision(db)
    if current is not None and current not in known_revisions():
        raise SchemaOutdatedError(
            f"the metadata database at {redact_url(db.url)} is at schema {current}, written by a newer lockgate; "
            "upgrade lockgate to use it"
        )


def check_current(db: Database) -> None:
    """Raise a clear error when the database is behind (or ahead of) this lockgate."""
    current = current_revision(db)
    head = head_revision()
    if current == head:
        return
    _refuse_newer(db)
    where = redact_url(db.url)
    if current is None:
        raise SchemaOutdatedError(
            f"the metadata database at {where} has no lockgate schema yet; run: lockgate db upgrade"
        )
    raise SchemaOutdatedError(
        f"the metadata database at {where} is at schema {current} but this lockgate needs {head}; "
        "run: lockgate db upgrade"
    )

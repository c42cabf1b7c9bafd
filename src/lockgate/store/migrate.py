"""Schema migrations, run through Alembic with an open connection.

Alembic is imported when a migration question is asked, not with lockgate: a process that
only logs metrics should not pay for it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.errors import SchemaOutdatedError
from lockgate.store.database import Database, redact_url

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = ["check_current", "current_revision", "head_revision", "upgrade"]

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


def upgrade(db: Database, revision: str = "head") -> str:
    """Bring the schema to ``revision``; returns the revision it ended at."""
    from alembic import command

    cfg = _config()
    with db.write() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    return current_revision(db) or ""


def check_current(db: Database) -> None:
    """Raise a clear error when the database is behind (or ahead of) this lockgate."""
    current = current_revision(db)
    head = head_revision()
    if current == head:
        return
    where = redact_url(db.url)
    if current is None:
        raise SchemaOutdatedError(
            f"the metadata database at {where} has no lockgate schema yet; run: lockgate db upgrade"
        )
    raise SchemaOutdatedError(
        f"the metadata database at {where} is at schema {current} but this lockgate needs {head}; "
        "run: lockgate db upgrade"
    )

"""The migrations build exactly the schema the code declares, on every backend."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import lockgate as lg
from lockgate.store import Database
from lockgate.store import migrate as migrations
from lockgate.store.schema import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(f"sqlite:///{tmp_path / 'm.db'}")
    return Database(request.getfixturevalue("pg_url"))


def test_upgraded_database_matches_schema_py(db: Database) -> None:
    migrations.upgrade(db)
    with db.read() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    db.dispose()
    assert differences == []


def test_a_fresh_database_is_reported_behind_until_upgraded(db: Database) -> None:
    with pytest.raises(lg.SchemaOutdatedError, match="lockgate db upgrade"):
        migrations.check_current(db)
    migrations.upgrade(db)
    migrations.check_current(db)
    assert migrations.current_revision(db) == migrations.head_revision()
    db.dispose()


def test_a_database_from_a_newer_lockgate_is_refused_with_advice(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    lg.Workspace.open(home).close()
    db = Database(f"sqlite:///{home / 'lockgate.db'}")
    with db.write() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    db.dispose()
    with pytest.raises(lg.SchemaOutdatedError, match="written by a newer lockgate; upgrade lockgate"):
        lg.Workspace.open(home)


def test_an_unknown_target_revision_is_bad_input(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(lg.InvalidInputError, match="schema revision 'nosuchrev' is unknown"):
        migrations.upgrade(db, "nosuchrev")
    db.dispose()

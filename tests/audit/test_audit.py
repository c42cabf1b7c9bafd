"""The audit log: every write leaves an event with its actor, and tampering is caught."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.audit._log import event_hash
from lockgate.entities import AuditEvent
from lockgate.store import schema as t


def _model() -> DummyClassifier:
    return DummyClassifier().fit([[0], [1]], [0, 1])


def _activity(ws: lg.Workspace) -> dict[str, str]:
    """One of each audited write; returns the ids involved."""
    with ws.start_run("train") as run:
        data = run.log_dataset(pa.table({"x": [1, 2]}), name="transactions")
        run.log_model(_model(), name="fraud")
    ws.models.set_alias("fraud", "champion", 1)
    ws.runs.delete([run.id])
    return {"run": run.id, "dataset": data.node_id}


def test_every_write_leaves_an_event_naming_its_actor(backend_ws: lg.Workspace) -> None:
    ids = _activity(backend_ws)
    events = list(reversed(backend_ws.audit.events()))
    assert [(e.action, e.object_kind, e.object_id) for e in events] == [
        ("run.created", "run", ids["run"]),
        ("dataset.registered", "dataset", ids["dataset"]),
        ("model_version.registered", "model_version", "fraud/1"),
        ("run.finished", "run", ids["run"]),
        ("alias.moved", "model", "fraud"),
        ("run.deleted", "run", ids["run"]),
    ]
    assert {e.actor for e in events} == {backend_ws.settings.actor}
    assert [e.seq for e in events] == list(range(1, 7))
    assert events[0].details == {"experiment": "default", "name": "train", "parent": None}
    assert events[2].details["run"] == ids["run"]
    assert [e.action for e in backend_ws.audit.events(object_kind="run", object_id=ids["run"])] == [
        "run.deleted",
        "run.finished",
        "run.created",
    ]
    assert len(backend_ws.audit.events(limit=2)) == 2
    report = backend_ws.audit.verify()
    assert report.ok
    assert (report.events_checked, report.head_seq, report.first_broken_seq) == (6, 6, None)


def test_the_acting_identity_comes_from_the_keyword_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with lg.Workspace.open(tmp_path / "a", identity="alice") as ws:
        with ws.start_run() as run:
            pass
        assert {e.actor for e in ws.audit.events()} == {"user:alice"}
        assert ws.runs.get(run.id).actor == "user:alice"
    monkeypatch.setenv("LOCKGATE_IDENTITY", "service:trainer")
    with lg.Workspace.open(tmp_path / "b") as ws:
        ws.models.register(_model(), name="fraud")
        assert ws.models.get("models:/fraud/1").created_by == "service:trainer"
        assert {e.actor for e in ws.audit.events()} == {"service:trainer"}
        # The keyword wins over the environment.
    with lg.Workspace.open(tmp_path / "b", identity="service:ci") as ws:
        ws.models.set_alias("fraud", "champion", 1)
        assert ws.audit.events(limit=1)[0].actor == "service:ci"


def test_the_very_first_events_of_two_writers_at_once_both_land(backend_ws: lg.Workspace) -> None:
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with backend_ws.db.write() as conn:
                backend_ws.audit.record(conn, actor="user:b", action="test.second", object_kind="t", object_id="2")
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread below
            errors.append(exc)

    with backend_ws.db.write() as conn:  # the first writer holds the brand-new chain head open…
        backend_ws.audit.record(conn, actor="user:a", action="test.first", object_kind="t", object_id="1")
        other = threading.Thread(target=second_writer)
        other.start()
        other.join(timeout=0.3)
        assert other.is_alive()  # …so the second one waits for it instead of failing
    other.join(timeout=30)
    assert errors == []
    assert [e.action for e in reversed(backend_ws.audit.events())] == ["test.first", "test.second"]
    assert backend_ws.audit.verify().ok


# -- tampering ------------------------------------------------------------------------------------


def _edit_details(ws: lg.Workspace, seq: int, details: dict[str, object]) -> None:
    with ws.db.write() as conn:
        conn.execute(sa.update(t.audit_events).where(t.audit_events.c.seq == seq).values(details=details))


def test_an_edited_event_is_named_by_verify(backend_ws: lg.Workspace) -> None:
    _activity(backend_ws)
    _edit_details(backend_ws, 3, {"run": None, "sha256": "0" * 64, "flavor": "sklearn"})
    report = backend_ws.audit.verify()
    assert not report.ok
    assert report.first_broken_seq == 3
    assert report.reason is not None
    assert "edited" in report.reason
    assert report.to_dict()["first_broken_seq"] == 3


def test_an_edit_with_every_later_hash_recomputed_is_still_caught_by_the_seal(backend_ws: lg.Workspace) -> None:
    _activity(backend_ws)
    with backend_ws.db.write() as conn:
        rows = [AuditEvent(**dict(r)) for r in conn.execute(sa.select(t.audit_events).order_by("seq")).mappings()]
        prev = rows[1].hash
        for ev in rows[2:]:  # rewrite event 3 and re-chain everything after it, head included
            details = {**ev.details, "flavor": "python"} if ev.seq == 3 else ev.details
            digest = event_hash(
                seq=ev.seq,
                ts=ev.ts,
                actor=ev.actor,
                action=ev.action,
                object_kind=ev.object_kind,
                object_id=ev.object_id,
                details=details,
                prev_hash=prev,
            )
            conn.execute(
                sa.update(t.audit_events)
                .where(t.audit_events.c.seq == ev.seq)
                .values(details=details, prev_hash=prev, hash=digest)
            )
            prev = digest
        conn.execute(sa.update(t.audit_head).values(seq=rows[-1].seq, hash=prev))
    report = backend_ws.audit.verify()
    assert not report.ok
    assert report.first_broken_seq == 3
    assert "seal" in (report.reason or "")


def test_events_removed_from_the_end_are_caught_by_the_anchor_file(backend_ws: lg.Workspace) -> None:
    _activity(backend_ws)
    with backend_ws.db.write() as conn:
        conn.execute(sa.delete(t.audit_events).where(t.audit_events.c.seq > 4))
        last = conn.execute(sa.select(t.audit_events.c.hash).where(t.audit_events.c.seq == 4)).scalar_one()
        conn.execute(sa.update(t.audit_head).values(seq=4, hash=last))  # a careful intruder fixes the head
    report = backend_ws.audit.verify()
    assert not report.ok
    assert report.first_broken_seq == 5
    assert "events 5..6 were removed" in (report.reason or "")
    assert "anchor" in (report.reason or "")


def test_a_removed_event_in_the_middle_or_a_stale_head_is_caught(ws: lg.Workspace) -> None:
    _activity(ws)
    with ws.db.write() as conn:
        conn.execute(sa.delete(t.audit_events).where(t.audit_events.c.seq == 2))
    report = ws.audit.verify()
    assert (report.ok, report.first_broken_seq) == (False, 2)
    assert "event 2 is missing" in (report.reason or "")


def test_a_clean_workspace_verifies_and_an_empty_one_too(backend_ws: lg.Workspace) -> None:
    empty = backend_ws.audit.verify()
    assert (empty.ok, empty.events_checked, empty.head_seq) == (True, 0, 0)
    _activity(backend_ws)
    _activity(backend_ws)  # the same data again is not a new dataset version: 5 new events
    report = backend_ws.audit.verify()
    assert (report.ok, report.events_checked, report.head_seq) == (True, 11, 11)


def test_without_its_key_a_workspace_refuses_to_seal_or_vouch(ws: lg.Workspace) -> None:
    _activity(ws)
    key = ws.settings.key_file
    assert key.is_file()
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    key.rename(key.with_suffix(".bak"))
    reopened = lg.Workspace.open(ws.home)
    report = reopened.audit.verify()
    assert not report.ok
    assert report.first_broken_seq == 1
    assert "key" in (report.reason or "")
    with pytest.raises(lg.IntegrityError, match="restore it from a backup"):
        reopened.start_run()
    reopened.close()


def test_two_workspaces_on_one_database_share_the_audit_key_through_a_setting(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = lg.Workspace.open(tmp_path / "alice", database_url=pg_url, upgrade=True)
    with first.start_run("r", experiment="shared"):
        pass
    # A second folder on the same database has no key of its own, and says what to do.
    second = lg.Workspace.open(tmp_path / "bob", database_url=pg_url)
    with pytest.raises(lg.IntegrityError, match="LOCKGATE_AUDIT_KEY_FILE"):
        second.start_run("r2", experiment="shared")
    assert [r.name for r in first.runs.search(experiment="shared")] == ["r"]  # nothing half-written
    second.close()
    monkeypatch.setenv("LOCKGATE_AUDIT_KEY_FILE", str(tmp_path / "alice" / "keys" / "audit.key"))
    second = lg.Workspace.open(tmp_path / "bob", database_url=pg_url)
    with second.start_run("r2", experiment="shared"):
        pass
    assert second.audit.verify().ok
    assert first.audit.verify().ok
    first.close()
    second.close()


def test_verify_while_others_keep_appending_reports_no_false_tampering(backend_ws: lg.Workspace) -> None:
    with backend_ws.start_run("seed", experiment="busy"):
        pass
    stop = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                with backend_ws.start_run("busy", experiment="busy"):
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        reports = [backend_ws.audit.verify() for _ in range(15)]
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert all(r.ok for r in reports), [r.reason for r in reports if not r.ok]

"""The deployment contract on every metadata backend: records, alias following vs pinning,
revisions a server can poll, audit events, and errors that name the fix."""

from __future__ import annotations

import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.deploy import Deployment, Route, ServingSettings


@pytest.fixture
def fraud(backend_ws: lg.Workspace) -> lg.Workspace:
    """Three versions of ``fraud``, ``champion`` on version 2."""
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    for _ in range(3):
        backend_ws.models.register(model, name="fraud")
    backend_ws.models.set_alias("fraud", "champion", 2)
    return backend_ws


def test_create_records_one_primary_route_and_settings(fraud: lg.Workspace) -> None:
    d = fraud.deployments.create("fraud-api", "models:/fraud@champion", settings={"max_batch_size": 64})
    assert [(r.model, r.role, r.weight) for r in d.routes] == [("models:/fraud@champion", "primary", 1.0)]
    assert d.settings == ServingSettings(max_batch_size=64)
    assert (d.revision, d.deleted, d.created_by) == (1, False, fraud.settings.actor)
    assert fraud.deployments.get("fraud-api") == d
    assert [x.name for x in fraud.deployments.list()] == ["fraud-api"]


def test_an_alias_route_follows_the_alias_and_a_pinned_one_does_not(fraud: lg.Workspace) -> None:
    fraud.deployments.create("fraud-api", "models:/fraud@champion")
    fraud.deployments.create("fraud-pinned", "models:/fraud/3")
    fraud.deployments.create("fraud-latest", "models:/fraud@latest")
    assert fraud.deployments.resolve("fraud-api").versions == ("models:/fraud/2",)
    revision = fraud.deployments.revision()

    fraud.models.set_alias("fraud", "champion", 1)
    fraud.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")

    assert fraud.deployments.resolve("fraud-api").versions == ("models:/fraud/1",)
    assert fraud.deployments.resolve("fraud-pinned").versions == ("models:/fraud/3",)
    assert fraud.deployments.resolve("fraud-latest").primary.version == 4
    assert fraud.deployments.revision() == revision  # the records were not written
    assert fraud.deployments.changes_since(revision) == []


def test_a_server_sees_record_changes_and_alias_moves_by_polling(fraud: lg.Workspace) -> None:
    svc = fraud.deployments
    first = svc.poll(0)
    assert (first.revision, first.changed, first.resolved) == (0, (), {})

    svc.create("fraud-api", "models:/fraud@champion")
    svc.create("fraud-pinned", "models:/fraud/3")
    p = svc.poll(first.revision)
    assert [d.name for d in p.changed] == ["fraud-api", "fraud-pinned"]
    assert {n: r.versions for n, r in p.resolved.items()} == {
        "fraud-api": ("models:/fraud/2",),
        "fraud-pinned": ("models:/fraud/3",),
    }
    held = [r.deployment for r in p.resolved.values()]

    fraud.models.set_alias("fraud", "champion", 3)
    moved = svc.poll(p.revision, held)
    assert (moved.revision, moved.changed) == (p.revision, ())
    assert moved.resolved["fraud-api"].versions == ("models:/fraud/3",)

    svc.delete("fraud-pinned")
    gone = svc.poll(moved.revision, held)
    assert [(d.name, d.deleted) for d in gone.changed] == [("fraud-pinned", True)]
    assert sorted(gone.resolved) == ["fraud-api"]


def test_every_write_bumps_the_table_wide_revision(fraud: lg.Workspace) -> None:
    svc = fraud.deployments
    assert svc.revision() == 0
    svc.create("a", "models:/fraud/1")
    svc.create("b", "models:/fraud/1")
    svc.update("a", settings={"max_wait_ms": 2})
    assert [(d.name, d.revision) for d in svc.changes_since(1)] == [("b", 2), ("a", 3)]
    assert svc.update("a", settings={"max_wait_ms": 2}).revision == 3  # nothing changed, nothing written
    updated = svc.update("a", model="models:/fraud@champion", settings={"stale_policy": "fail_closed"})
    assert updated.revision == 4
    assert (updated.primary.model, updated.settings.max_wait_ms, updated.settings.stale_policy) == (
        "models:/fraud@champion",
        2,
        "fail_closed",
    )
    svc.delete("b")
    assert svc.revision() == 5
    again = svc.create("b", "models:/fraud/2")  # a deleted name can be used again
    assert (again.revision, again.deleted) == (6, False)
    assert [(d.name, d.revision) for d in svc.changes_since(4)] == [("b", 6)]


def test_writes_are_audited_with_the_actor(fraud: lg.Workspace) -> None:
    svc = fraud.deployments
    svc.create("fraud-api", "models:/fraud@champion")
    svc.update("fraud-api", model="models:/fraud/3", settings={"max_queue": 10})
    svc.delete("fraud-api")
    events = fraud.audit.events(object_kind="deployment", object_id="fraud-api")
    assert [e.action for e in reversed(events)] == ["deployment.created", "deployment.updated", "deployment.deleted"]
    created, updated = events[2], events[1]
    assert created.details["resolved"] == "models:/fraud/2"
    assert created.details["routes"] == [{"model": "models:/fraud@champion", "role": "primary", "weight": 1.0}]
    assert updated.details["settings"] == {"max_queue": {"from": 1024, "to": 10}}
    assert updated.details["resolved"] == "models:/fraud/3"
    assert {e.actor for e in events} == {fraud.settings.actor}
    assert fraud.audit.verify().ok


def test_errors_name_the_thing_and_the_fix(fraud: lg.Workspace) -> None:
    svc = fraud.deployments
    with pytest.raises(lg.NotFoundError, match="model 'churn' does not exist"):
        svc.create("x", "models:/churn/1")
    with pytest.raises(lg.NotFoundError, match="has no version 9"):
        svc.create("x", "models:/fraud/9")
    with pytest.raises(lg.NotFoundError, match="has no alias 'staging'"):
        svc.create("x", "models:/fraud@staging")
    with pytest.raises(lg.InvalidInputError, match="deployment name 'no spaces' is not valid"):
        svc.create("no spaces", "models:/fraud/1")
    with pytest.raises(lg.InvalidReferenceError, match="not a model reference"):
        svc.create("x", "fraud:3")
    with pytest.raises(lg.InvalidInputError, match="unknown serving setting"):
        svc.create("x", "models:/fraud/1", settings={"batch": 3})
    with pytest.raises(lg.InvalidInputError, match="stale_policy 'never'"):
        svc.create("x", "models:/fraud/1", settings={"stale_policy": "never"})
    svc.create("x", "models:/fraud/1")
    with pytest.raises(lg.ConflictError, match="already exists; change it with: lockgate deploy update x"):
        svc.create("x", "models:/fraud/2")
    for call in (svc.get, svc.resolve, svc.delete, lambda n: svc.update(n, settings={"max_queue": 5})):
        with pytest.raises(lg.NotFoundError, match="deployment 'nope' does not exist; see: lockgate deploy list"):
            call("nope")
    assert svc.revision() == 1  # refused writes left nothing behind


def test_a_route_whose_target_disappears_is_reported_not_hidden(fraud: lg.Workspace) -> None:
    svc = fraud.deployments
    svc.create("follows", "models:/fraud@champion")
    svc.create("pinned", "models:/fraud/3")
    fraud.models.delete_alias("fraud", "champion")
    fraud.models.delete("fraud", 3)
    with pytest.raises(lg.NotFoundError, match="no alias 'champion' any more"):
        svc.resolve("follows")
    resolved = svc.resolve_many(svc.list())
    assert resolved["pinned"].primary.version is None
    assert "version 3 of 'fraud', which no longer exists" in resolved["pinned"].problems[0]


def test_records_round_trip_through_their_spec() -> None:
    d = Deployment(
        name="d",
        routes=(Route(model="models:/fraud/1"), Route(model="models:/fraud@c", role="shadow")),
        settings=ServingSettings(feature_service="fraud_v1"),
        revision=7,
        deleted=False,
        created_at=1,
        created_by="user:a",
        updated_at=2,
        updated_by="user:b",
    )
    row = {"name": "d", "spec": d.spec(), "revision": 7, "deleted": False}
    row |= {"created_at": 1, "created_by": "user:a", "updated_at": 2, "updated_by": "user:b"}
    assert Deployment.from_row(row) == d
    assert d.primary.model == "models:/fraud/1"
    with pytest.raises(lg.InvalidInputError, match="route weight 2"):
        Route(model="models:/fraud/1", weight=2)

"""``ws.features`` end to end on small generated data: training sets with lineage, materialize
then read online, pushes, freshness and skew as gates, and bad input that writes nothing."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.features import FreshnessFailed, SkewDetected

T0 = datetime(2026, 3, 1, tzinfo=UTC)

DEFINITIONS = """
import pyarrow.compute as pc
from lockgate.features import Count, Entity, FeatureService, FeatureView, Mean, ParquetSource, on_demand_feature

card = Entity("card", join_keys=["card_id"])
card_profile = FeatureView(
    name="card_profile", entities=[card], ttl="30d", freshness_sla="1d", owner="risk",
    source=ParquetSource("data/profile.parquet", event_time="ts"), features={"limit": "float64", "tier": "string"},
)
card_activity = FeatureView(
    name="card_activity", entities=[card], ttl="7d", freshness_sla="2h",
    source=ParquetSource("data/tx/", event_time="ts"),
    aggregations=[Count("amount", window="1d", name="n_1d"), Mean("amount", window="7d", name="avg_amount_7d")],
)

@on_demand_feature(inputs=["amount", "card_activity:avg_amount_7d"], examples=[({"amount": 10.0, "avg_amount_7d": 5.0}, 2.0)])
def amount_ratio(amount, avg_amount_7d):
    return pc.divide(amount, avg_amount_7d)

fraud_v1 = FeatureService("fraud_v1", ["card_activity:*", "card_profile:limit", "amount_ratio"])
"""


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (the current directory): definitions and their source data."""
    root = tmp_path / "project"
    (root / "data" / "tx").mkdir(parents=True)
    (root / "features.py").write_text(textwrap.dedent(DEFINITIONS))
    profile = {"card_id": ["c1", "c2", "c3"], "ts": [T0] * 3, "limit": [100.0, 200.0, 300.0], "tier": ["a", "b", "c"]}
    pq.write_table(pa.table(profile), root / "data" / "profile.parquet")
    tx = {
        "card_id": ["c1", "c1", "c2", "c1"],
        "ts": [hours(1), hours(2), hours(3), hours(10)],
        "amount": [10.0, 20.0, 30.0, 90.0],
    }
    pq.write_table(pa.table(tx), root / "data" / "tx" / "part-0.parquet")
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def features(project: Path, ws: lg.Workspace) -> lg.Workspace:
    ws.features.apply(project / "features.py")
    return ws


def entity_rows() -> pa.Table:
    return pa.table(
        {
            "card_id": ["c1", "c2", "c1", "c4"],
            "event_timestamp": [hours(5), hours(5), hours(11), hours(5)],
            "amount": [45.0, 60.0, 5.0, 1.0],
            "label": [1, 0, 0, 0],
        }
    )


def test_a_training_set_is_point_in_time_correct_and_recorded_in_lineage(features: lg.Workspace) -> None:
    train = features.features.training_set(entity_rows(), "fraud_v1")
    assert train.column_names == [
        "card_id",
        "event_timestamp",
        "amount",
        "label",
        "n_1d",
        "avg_amount_7d",
        "limit",
        "amount_ratio",
    ]
    # At 05:00 card c1 has seen two events (10, 20); at 11:00 the third (90) too. c4 has nothing.
    assert train.column("n_1d").to_pylist() == [2, 1, 3, None]
    assert train.column("avg_amount_7d").to_pylist() == [15.0, 30.0, 40.0, None]
    assert train.column("limit").to_pylist() == [100.0, 200.0, 100.0, None]
    # The on-demand feature is the same function serving runs, over the joined columns.
    assert train.column("amount_ratio").to_pylist() == [3.0, 2.0, 0.125, None]
    version = features.datasets.get("datasets:/fraud_v1@latest")
    assert version.num_rows == 4
    upstream = features.lineage_of(version.uri, direction="upstream")
    kinds = {(n.kind, n.id.split("@")[0]) for n in upstream.nodes}
    assert {("feature_view", "card_activity"), ("feature_view", "card_profile")} <= kinds
    assert {("on_demand_feature", "amount_ratio"), ("feature_service", "fraud_v1")} <= kinds
    assert ("dataset", "data/profile.parquet") in kinds
    assert ("dataset", "data/tx/") in kinds  # the computed output's own upstream: the raw events
    # Lineage starts from a definition too: what the view fed.
    downstream = features.lineage_of("features:/card_activity", direction="downstream")
    assert version.node_id in {n.id for n in downstream.nodes}
    # A run logging the same table under the same name joins the same lineage node.
    with features.start_run("train") as run:
        logged = run.log_dataset(train, name="fraud_v1")
    assert logged.node_id == version.node_id


def test_as_of_and_references_without_a_service(features: lg.Workspace) -> None:
    rows = pa.table({"card_id": ["c1"], "event_timestamp": [hours(11)]})
    early = features.features.training_set(rows, ["card_activity:n_1d"], as_of=hours(4))
    assert early.column("n_1d").to_pylist() == [2]
    assert features.datasets.get("datasets:/training_set@latest").num_rows == 1
    with pytest.raises(lg.NotFoundError, match="feature view 'card_activity' has no feature 'nope'"):
        features.features.training_set(rows, ["card_activity:nope"])
    with pytest.raises(lg.NotFoundError, match="no feature view named 'cards' is registered"):
        features.features.training_set(rows, ["cards:*"])
    with pytest.raises(lg.InvalidInputError, match="takes the request field 'amount', which the entity rows lack"):
        features.features.training_set(rows, ["amount_ratio"])


def test_a_model_trained_on_a_training_set_is_bound_to_its_service(features: lg.Workspace) -> None:
    store = features.features
    with features.start_run("train") as run:
        store.training_set(entity_rows(), "fraud_v1", run_id=run.id)
        mv = run.log_model(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")
    # Registered from a run whose training set came through fraud_v1: bound to it, in lineage.
    binding = store.service_of("models:/fraud@latest")
    assert binding is not None
    assert binding.service == "fraud_v1"
    assert binding.model_ref == mv.uri == "models:/fraud/1"
    assert [f.ref for f in binding.features] == [
        "card_activity:n_1d",
        "card_activity:avg_amount_7d",
        "card_profile:limit",
        "amount_ratio",
    ]
    assert [str(c) for c in store.registry.consumers("card_activity")] == ["model fraud v1"]
    upstream = features.lineage_of(mv.uri, direction="upstream")
    assert ("dataset", "input:features", "run") in {(e.src_kind, e.relation, e.dst_kind) for e in upstream.edges}
    # A version registered without features of the store is bound to nothing.
    other = features.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="plain")
    assert store.service_of(other) is None
    with pytest.raises(lg.NotFoundError, match="run 'nope' does not exist"):
        store.training_set(entity_rows(), "fraud_v1", run_id="nope")


def test_materialize_then_read_online_with_age_and_status(features: lg.Workspace) -> None:
    store = features.features
    report = store.materialize(end=hours(12))
    assert report.computed == {"card_activity": 4}  # one row per entity and event time
    assert {r.view: r.written for r in report.views} == {"card_activity": 2, "card_profile": 3}
    answer = store.online(
        "fraud_v1", [{"card_id": "c1", "amount": 80.0}, {"card_id": "c9", "amount": 1.0}], now=hours(13)
    )
    first = answer[0]
    assert first.values == {"n_1d": 3, "avg_amount_7d": 40.0, "limit": 100.0, "amount_ratio": 2.0}
    assert first.ages["n_1d"] == 3 * 3600.0
    assert first.statuses == dict.fromkeys(answer.features, "fresh")
    assert first.feature("amount_ratio").age == 3 * 3600.0
    assert answer[1].status == "missing"
    assert answer.to_arrow().column_names == ["n_1d", "avg_amount_7d", "limit", "amount_ratio"]
    # A second run over unchanged data recomputes nothing and writes nothing.
    again = store.materialize(end=hours(12))
    assert again.computed == {}
    assert [r.written for r in again.views] == [0, 0]
    # Past a view's ttl the value is stale (served as last known here).
    late = store.online(["card_activity:avg_amount_7d"], {"card_id": "c1"}, now=hours(10 + 24 * 8))
    assert late[0].statuses == {"avg_amount_7d": "stale"}
    with pytest.raises(lg.InvalidInputError, match="takes the request field 'amount', which an entity row lacks"):
        store.online("fraud_v1", {"card_id": "c1"}, now=hours(13))


def test_push_updates_online_and_the_offline_log(features: lg.Workspace) -> None:
    store = features.features
    store.materialize(end=hours(12))
    pushed = store.push(
        "card_profile", pa.table({"card_id": ["c1"], "ts": [hours(12)], "limit": [999.0], "tier": ["z"]})
    )
    assert (pushed.rows, pushed.online_written) == (1, 1)
    assert store.online(["card_profile:limit"], {"card_id": "c1"}, now=hours(13))[0].values == {"limit": 999.0}
    train = store.training_set(
        pa.table({"card_id": ["c1", "c1"], "event_timestamp": [hours(11), hours(13)]}), ["card_profile:limit"]
    )
    assert train.column("limit").to_pylist() == [100.0, 999.0]
    with pytest.raises(lg.InvalidInputError, match="no column 'tier'"):
        store.push("card_profile", pa.table({"card_id": ["c1"], "ts": [hours(12)], "limit": [1.0]}))


def test_a_push_whose_online_write_fails_leaves_no_offline_rows(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCKGATE_ONLINE_STORE_URL", "memcached://127.0.0.1:1")
    with lg.Workspace.open(tmp_path / "ws2") as ws:
        ws.features.apply(project / "features.py")
        rows = pa.table({"card_id": ["c1"], "ts": [hours(12)], "limit": [1.0], "tier": ["z"]})
        with pytest.raises(lg.InvalidInputError, match="not supported"):
            ws.features.push("card_profile", rows)
        view = ws.features.registry.current().view("card_profile")
        assert not list(Path(ws.features.offline_store.pushed_uri(view)).glob("*.parquet"))


def test_a_failing_computed_view_materializes_nothing(features: lg.Workspace, project: Path) -> None:
    (project / "broken.py").write_text(
        textwrap.dedent(
            """
            from lockgate.features import Entity, FeatureView, ParquetSource
            broken = FeatureView(name="broken", entities=[Entity("card", join_keys=["card_id"])], ttl="1d",
                                 source=ParquetSource("data/tx/", event_time="ts"),
                                 sql="SELECT card_id, ts, no_such_column AS x FROM source", features={"x": "float64"})
            """
        )
    )
    features.features.apply(project / "broken.py")
    with pytest.raises(lg.LockgateError):
        features.features.materialize(end=hours(12))
    catalog = features.features.registry.current()
    offline = features.features.offline_store
    assert not offline.has_computed(catalog.view("card_activity"))
    assert features.features.online_store.get_watermark(catalog.view("card_profile")) is None


def test_freshness_compares_the_newest_event_with_the_sla(features: lg.Workspace) -> None:
    store = features.features
    report = store.freshness(now=hours(11))
    status = {v.view: (v.status, v.lag) for v in report.views}
    assert status == {"card_activity": ("ok", timedelta(hours=1)), "card_profile": ("ok", timedelta(hours=11))}
    assert report.passed
    late = store.freshness(now=hours(30))
    assert [v.status for v in late.views] == ["late", "late"]
    with pytest.raises(FreshnessFailed, match="'card_activity' is 20h behind \\(SLA 2h\\)"):
        late.check()
    assert late.to_dict()["views"][0]["sla_seconds"] == 7200.0


def test_skew_passes_in_sync_and_fails_when_online_values_drift(features: lg.Workspace) -> None:
    store = features.features
    store.materialize(end=hours(12))
    report = store.skew("card_profile", now=hours(13))
    assert report.passed
    assert report.entities == 3
    limit = next(f for f in report.features if f.feature == "limit")
    assert (limit.psi, limit.mismatched, limit.ks_pvalue) == (0.0, 0, 1.0)
    report.check()
    # Values written to the online store behind the offline data's back: skew.
    view = store.registry.current().view("card_profile")
    drifted = pa.table(
        {"card_id": ["c1", "c2", "c3"], "ts": [hours(12)] * 3, "limit": [5000.0, 6000.0, 7000.0], "tier": ["x"] * 3}
    )
    store.online_store.write(view, drifted)
    skewed = store.skew("card_profile", now=hours(13))
    assert not skewed.passed
    assert {f.feature: f.mismatched for f in skewed.features} == {"limit": 3, "tier": 3}
    with pytest.raises(SkewDetected, match="feature view 'card_profile' fails the skew check: 'limit'"):
        skewed.check()


def test_skew_validates_an_example_payload(features: lg.Workspace) -> None:
    store = features.features
    store.materialize(end=hours(12))
    good = store.skew("card_activity", now=hours(13), payload={"card_id": "c1", "amount": 3.0})
    assert good.payload == []
    assert good.passed
    bad = store.skew("card_activity", now=hours(13), payload=[{"card_id": 7, "n_1d": "many", "extra": 1}])
    messages = {p.field: (p.severity, p.message) for p in bad.payload or []}
    assert messages["card_id"][1].startswith("join key 'card_id' is int64 in the payload but string")
    assert messages["n_1d"][0] == "error"
    assert (
        messages["amount"][1]
        == "on-demand feature 'amount_ratio' needs the request field 'amount', which the payload lacks"
    )
    assert messages["extra"][0] == "warn"
    assert not bad.passed


def test_a_fresh_process_finds_on_demand_functions_in_the_applied_file(features: lg.Workspace, project: Path) -> None:
    features.features.materialize(end=hours(12))
    with lg.Workspace.open(features.home) as other:  # as a new process would: nothing loaded yet
        answer = other.features.online(["amount_ratio"], {"card_id": "c1", "amount": 20.0}, now=hours(13))
        assert answer[0].values == {"amount_ratio": 0.5}
    (project / "features.py").unlink()
    with lg.Workspace.open(features.home) as other:
        with pytest.raises(lg.NotFoundError, match="its function is not loaded in this process"):
            other.features.online(["amount_ratio"], {"card_id": "c1", "amount": 20.0}, now=hours(13))

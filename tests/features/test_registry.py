"""The feature registry on every metadata backend: content-hash versions, the apply diff,
refusals that name the consumer, bindings, the contract consumer link, and the audit trail."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.data import Contract, IncompatibleContract
from lockgate.features import (
    Entity,
    FeatureService,
    FeatureView,
    IncompatibleFeatureChange,
    Mean,
    OnDemandFeature,
    ParquetSource,
    load_definitions,
    on_demand_feature,
)

CARD = Entity("card", join_keys=["card_id"])


def view(**changes: Any) -> FeatureView:
    fields: dict[str, Any] = {
        "name": "card_stats",
        "entities": [CARD],
        "ttl": timedelta(days=1),
        "source": ParquetSource("data/card_stats/", event_time="ts"),
        "features": {"spend": "float64", "visits": "int64"},
        "owner": "team-risk",
    }
    fields.update(changes)
    return FeatureView(**fields)


@on_demand_feature(inputs=["amount", "card_stats:spend"], examples=[({"amount": 4.0, "spend": 2.0}, 2.0)])
def spend_ratio(amount: Any, spend: Any) -> Any:
    return pa.compute.divide(amount, spend)


SERVICE = FeatureService("fraud_v1", ["card_stats:*", "spend_ratio"])


def events(ws: lg.Workspace, action: str) -> list[Any]:
    return [e for e in ws.audit.events(limit=1000) if e.action == action]


def model_version(ws: lg.Workspace, name: str = "fraud") -> lg.ModelVersion:
    return ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name=name)


def test_apply_registers_versions_by_content_and_reports_the_diff(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    first = features.apply([view(), spend_ratio, SERVICE])
    assert first.applied
    assert [(c.kind, c.name, c.action) for c in first.changes] == [
        ("entity", "card", "added"),
        ("feature_view", "card_stats", "added"),
        ("on_demand_feature", "spend_ratio", "added"),
        ("feature_service", "fraud_v1", "added"),
    ]
    assert first.changes[1].version == view().version
    again = features.apply([view(), spend_ratio, SERVICE])
    assert [c.action for c in again.changes] == ["unchanged"] * 4
    changed = features.apply([view(ttl="2d", features={"spend": "float64", "visits": "int64", "tips": "float64"})])
    assert [(c.name, c.action) for c in changed.changes] == [
        ("card", "unchanged"),
        ("card_stats", "changed"),
        ("spend_ratio", "removed"),
        ("fraud_v1", "removed"),
    ]
    fields = {f.field: (f.old, f.new) for f in changed.changed[0].fields}
    assert fields == {"ttl": ("1d", "2d"), "features.tips": (None, "float64")}
    assert changed.summary() == "0 added, 1 changed, 1 unchanged, 2 not in the file (kept registered)"
    # Not in the file is not deleted: the service and the on-demand feature stay current.
    assert {d.name for d in features.registry.list()} == {"card", "card_stats", "spend_ratio", "fraud_v1"}
    history = features.registry.versions("card_stats")
    assert [v.current for v in history] == [True, False]
    assert history[1].version == view().version
    assert features.registry.get("card_stats", version=history[1].version[:8]).spec["ttl"] == "1d"
    # Going back to an older version makes it current again without a new row.
    back = features.apply([view()])
    assert back.changed[0].previous == history[0].version
    assert features.registry.get("card_stats").version == view().version
    assert len(features.registry.versions("card_stats")) == 2
    applied = events(backend_ws, "feature_view.applied")
    assert len(applied) == 3
    assert {e.actor for e in applied} == {backend_ws.settings.actor}
    assert applied[0].object_id == "card_stats"


def test_a_dry_run_writes_nothing(backend_ws: lg.Workspace) -> None:
    plan = backend_ws.features.apply([view()], dry_run=True)
    assert not plan.applied
    assert [c.action for c in plan.changes] == ["added", "added"]
    assert backend_ws.features.registry.list() == []
    assert events(backend_ws, "feature_view.applied") == []


def test_stored_specs_rebuild_the_same_definitions(backend_ws: lg.Workspace) -> None:
    aggregated = FeatureView(
        name="card_activity",
        entities=[CARD],
        ttl="7d",
        source=ParquetSource("data/tx/", event_time="ts", created_time="loaded_at", contract="transactions"),
        aggregations=[Mean("amount", window="7d", name="avg_amount_7d")],
        freshness_sla="2h",
        stale_policy="default",
        defaults={"avg_amount_7d": 0.0},
    )
    backend_ws.features.apply([aggregated, view(), spend_ratio, SERVICE])
    catalog = backend_ws.features.registry.current()
    assert catalog.views["card_activity"] == aggregated
    assert catalog.views["card_activity"].version == aggregated.version
    assert catalog.services["fraud_v1"] == SERVICE
    assert catalog.on_demand["spend_ratio"].version == spend_ratio.version
    assert catalog.entities["card"] == CARD


def test_unknown_names_are_refused_in_one_sentence_and_nothing_is_written(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    with pytest.raises(lg.InvalidInputError, match="feature service 'fraud_v1' lists 'card_stats:tips', but"):
        features.apply([view(), FeatureService("fraud_v1", ["card_stats:tips"])])
    with pytest.raises(lg.InvalidInputError, match="no feature view is called 'nope'"):
        features.apply([FeatureService("s", ["nope:x"])])
    assert features.registry.list() == []
    with pytest.raises(lg.InvalidInputError, match="two different definitions of feature view 'card_stats'"):
        features.apply([view(), view(ttl="3d")])
    with pytest.raises(lg.InvalidInputError, match="is not a feature definition"):
        features.apply([view(), "card_stats"])
    with pytest.raises(lg.NotFoundError, match="no feature view named 'card_stats' is registered"):
        features.registry.get("card_stats", kind="feature_view")


def test_a_change_that_breaks_a_bound_model_is_refused_naming_it(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    features.apply([view(), spend_ratio, SERVICE])
    mv = model_version(backend_ws)
    binding = features.bind("fraud_v1", mv)
    assert binding.model_ref == "models:/fraud/1"
    assert [f.ref for f in binding.features] == ["card_stats:spend", "card_stats:visits", "spend_ratio"]
    assert features.bind("fraud_v1", "models:/fraud/1") == binding  # again: nothing new
    assert len(events(backend_ws, "feature_service.bound")) == 1
    # Dropping a feature, retyping one, or unlisting one from the service breaks the model.
    with pytest.raises(IncompatibleFeatureChange) as refused:
        features.apply([view(features={"spend": "int64"}), SERVICE])
    messages = [v.message for v in refused.value.violations]
    assert len(messages) == 2
    assert messages[0].startswith(
        "model fraud v1, bound to feature service 'fraud_v1', reads card_stats:spend (float64), and feature "
        "view 'card_stats' changes its type to int64"
    )
    assert "card_stats:visits (int64), and feature view 'card_stats' drops it" in messages[1]
    assert refused.value.exit_code == 1
    with pytest.raises(IncompatibleFeatureChange, match="feature service 'fraud_v1' no longer lists it"):
        features.apply([FeatureService("fraud_v1", ["card_stats:spend", "card_stats:visits"])])
    # A dry run lists the same problems instead of raising; nothing was written.
    plan = features.apply([view(features={"spend": "int64"}), SERVICE], dry_run=True)
    assert not plan.ok
    assert len(plan.violations) == 2
    assert features.registry.get("card_stats").version == view().version
    # Adding a feature breaks nobody; a deleted model version consumes nothing any more.
    features.apply([view(features={"spend": "float64", "visits": "int64", "tips": "float64"})])
    backend_ws.models.delete("fraud", 1)
    features.apply([view(features={"spend": "int64"}), SERVICE])
    assert features.registry.bindings() == []


def test_model_feature_references_protect_their_features(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    features.apply([view()])
    backend_ws.models.register(
        DummyClassifier().fit([[0], [1]], [0, 1]), name="scorer", features=["card_stats:visits", "amount"]
    )
    consumers = features.registry.consumers("card_stats")
    assert [(str(c), c.via, c.features) for c in consumers] == [("model scorer v1", "", ("card_stats:visits",))]
    with pytest.raises(IncompatibleFeatureChange, match="model scorer v1, registered with feature references"):
        features.apply([view(features={"spend": "float64"})])
    features.apply([view(features={"spend": "float32", "visits": "int64"})])  # not a feature it reads


def test_consumers_include_models_reading_through_an_on_demand_feature(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    features.apply([view(), spend_ratio, FeatureService("ratio_only", ["spend_ratio"])])
    model_version(backend_ws)
    features.bind("ratio_only", "models:/fraud@latest")
    found = features.registry.consumers("card_stats")
    assert [(str(c), c.via, c.features) for c in found] == [("model fraud v1", "ratio_only", ("spend_ratio",))]
    assert found[0].to_dict()["model"] == "models:/fraud/1"


def test_bind_refuses_unknown_services_models_and_unapplied_changes(backend_ws: lg.Workspace) -> None:
    features = backend_ws.features
    features.apply([view(), spend_ratio, SERVICE])
    model_version(backend_ws)
    with pytest.raises(lg.NotFoundError, match="no feature service named 'nope' is registered"):
        features.bind("nope", "models:/fraud/1")
    with pytest.raises(lg.NotFoundError, match="model version models:/fraud/7 does not exist"):
        features.bind("fraud_v1", "models:/fraud/7")
    with pytest.raises(lg.ConflictError, match="differs from its registered version"):
        features.bind(FeatureService("fraud_v1", ["card_stats:spend"]), "models:/fraud/1")
    features.bind(SERVICE, "models:/fraud/1")
    assert [b.model_ref for b in features.registry.bindings(service="fraud_v1")] == ["models:/fraud/1"]
    assert [b.service for b in features.registry.bindings(model="models:/fraud/1")] == ["fraud_v1"]
    # The binding is lineage: the model version has the service version upstream.
    graph = backend_ws.lineage_of("models:/fraud/1", direction="upstream")
    assert any(n.kind == "feature_service" and n.id.startswith("fraud_v1@") for n in graph.nodes)


def test_definitions_load_from_a_file(tmp_path: Path, ws: lg.Workspace) -> None:
    file = tmp_path / "defs.py"
    file.write_text(
        textwrap.dedent(
            """
            import pyarrow.compute as pc
            from lockgate.features import Entity, FeatureService, FeatureView, ParquetSource, on_demand_feature

            card = Entity("card", join_keys=["card_id"])
            stats = FeatureView(name="card_stats", entities=[card], ttl="1d",
                                source=ParquetSource("data/", event_time="ts"), features={"spend": "float64"})

            @on_demand_feature(inputs=["amount", "card_stats:spend"])
            def ratio(amount, spend):
                return pc.divide(amount, spend)

            fraud = FeatureService("fraud_v1", ["card_stats:spend", "ratio"])
            """
        )
    )
    catalog = load_definitions(file)
    assert sorted(catalog.views) == ["card_stats"]
    assert isinstance(catalog.on_demand["ratio"], OnDemandFeature)
    plan = ws.features.apply(file)
    assert plan.origin == str(file.resolve())
    assert ws.features.registry.get("ratio").origin == str(file.resolve())
    broken = tmp_path / "broken.py"
    broken.write_text("import nothing_like_this\n")
    with pytest.raises(lg.InvalidInputError, match=r"broken.py does not import \(ModuleNotFoundError"):
        load_definitions(broken)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(lg.InvalidInputError, match="defines no Entity, FeatureView"):
        load_definitions(empty)
    with pytest.raises(lg.NotFoundError, match="does not exist"):
        load_definitions(tmp_path / "missing.py")


def test_a_contract_change_that_breaks_a_tagged_view_is_refused_naming_it(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    columns = {
        "card_id": {"type": "string", "nullable": False},
        "ts": {"type": "timestamp", "nullable": False},
        "amount": {"type": "float64"},
        "note": {"type": "string"},
    }
    contracts.register(Contract.from_dict({"name": "transactions", "columns": columns}))
    activity = FeatureView(
        name="card_activity",
        entities=[CARD],
        ttl="7d",
        source=ParquetSource("data/tx/", event_time="ts", contract="transactions"),
        aggregations=[Mean("amount", window="7d", name="avg_amount_7d")],
    )
    backend_ws.features.apply([activity])
    (consumer,) = contracts.consumers("transactions")
    assert (str(consumer), consumer.contract_version, consumer.columns) == (
        "feature view card_activity",
        1,
        ("card_id", "ts", "amount"),
    )
    without_amount = {k: v for k, v in columns.items() if k != "amount"}
    with pytest.raises(IncompatibleContract, match="feature view card_activity uses column 'amount'"):
        contracts.register(
            Contract.from_dict({"name": "transactions", "compatibility": "none", "columns": without_amount})
        )
    # A column the view does not read may go.
    without_note = {k: v for k, v in columns.items() if k != "note"}
    assert contracts.register(Contract.from_dict({"name": "transactions", "columns": without_note})).version == 2


def test_a_sql_view_reads_the_contract_columns_its_query_names(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    columns = {"card_id": {"type": "string"}, "ts": {"type": "timestamp"}, "amount": {"type": "float64"}}
    columns |= {"merchant": {"type": "string"}}
    contracts.register(Contract.from_dict({"name": "transactions", "columns": columns}))
    sql_view = FeatureView(
        name="card_big",
        entities=[CARD],
        ttl="1d",
        source=ParquetSource("data/tx/", event_time="ts", contract="transactions@1"),
        sql='SELECT card_id, ts, "AMOUNT" > 100 AS big FROM source',
        features={"big": "bool"},
    )
    backend_ws.features.apply([sql_view])
    (consumer,) = contracts.consumers("transactions")
    assert consumer.columns == ("card_id", "ts", "amount")

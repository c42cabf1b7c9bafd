"""The model registry contract: versions, aliases, signatures, verified loading, hooks."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier

import lockgate as lg
from lockgate.features import Entity, FeatureService, FeatureView, ParquetSource
from lockgate.registry import AliasMove


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"amount": rng.normal(50, 20, 200), "hour": rng.integers(0, 24, 200).astype("int64")})
    frame["is_fraud"] = (frame["amount"] > 60).astype("int64")
    return frame


@pytest.fixture(scope="module")
def classifier(training_frame: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression(max_iter=200).fit(training_frame[["amount", "hour"]], training_frame["is_fraud"])


def _register(ws: lg.Workspace, name: str, n: int, model: object) -> list[lg.ModelVersion]:
    return [ws.models.register(model, name=name) for _ in range(n)]


def test_versions_are_numbered_per_name_and_found_by_number_alias_or_latest(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    fraud = _register(backend_ws, "fraud", 3, classifier)
    churn = _register(backend_ws, "churn", 1, classifier)
    assert [v.version for v in fraud] == [1, 2, 3]
    assert [v.version for v in churn] == [1]
    assert backend_ws.models.get("models:/fraud/3").version == 3
    assert backend_ws.models.get("models:/fraud@latest").version == 3
    assert [v.version for v in backend_ws.models.versions("fraud")] == [3, 2, 1]
    backend_ws.models.set_alias("fraud", "champion", 2)
    champion = backend_ws.models.get("models:/fraud@champion")
    assert (champion.version, champion.aliases, champion.uri) == (2, ("champion",), "models:/fraud/2")
    listed = {m["name"]: m for m in backend_ws.models.list()}
    assert listed["fraud"]["latest"] == 3
    assert listed["fraud"]["versions"] == 3
    assert listed["fraud"]["aliases"] == {"champion": 2}


def test_an_alias_moves_in_one_audited_step(backend_ws: lg.Workspace, classifier: LogisticRegression) -> None:
    _register(backend_ws, "fraud", 2, classifier)
    backend_ws.models.set_alias("fraud", "champion", 1)
    moved = backend_ws.models.set_alias("fraud", "champion", 2)
    assert moved.version == 2
    assert backend_ws.models.get("models:/fraud/1").aliases == ()
    assert backend_ws.models.get("models:/fraud/2").aliases == ("champion",)
    events = [e for e in backend_ws.audit.events(object_kind="model", object_id="fraud") if e.action == "alias.moved"]
    assert [e.details for e in reversed(events)] == [
        {"alias": "champion", "from": None, "to": 1},
        {"alias": "champion", "from": 1, "to": 2},
    ]
    assert {e.actor for e in events} == {backend_ws.settings.actor}
    backend_ws.models.delete_alias("fraud", "champion")
    with pytest.raises(lg.NotFoundError, match="has no alias 'champion'"):
        backend_ws.models.get("models:/fraud@champion")
    assert backend_ws.audit.events(object_id="fraud", limit=1)[0].action == "alias.deleted"


def test_unknown_models_versions_and_aliases_say_what_exists(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    _register(backend_ws, "fraud", 3, classifier)
    backend_ws.models.set_alias("fraud", "champion", 3)
    with pytest.raises(lg.NotFoundError, match=r"model 'nope' does not exist; see: lockgate models list"):
        backend_ws.models.get("models:/nope/1")
    with pytest.raises(
        lg.NotFoundError, match=r"model 'fraud' has no version 9 \(latest is 3\); see: lockgate models show fraud"
    ):
        backend_ws.models.get("models:/fraud/9")
    with pytest.raises(lg.NotFoundError, match=r"has no alias 'staging' \(aliases: champion; latest is 3\)"):
        backend_ws.models.get("models:/fraud@staging")
    with pytest.raises(lg.NotFoundError, match=r"latest is 3"):
        backend_ws.models.set_alias("fraud", "champion", 7)
    with pytest.raises(lg.NotFoundError):
        backend_ws.models.versions("nope")
    assert backend_ws.models.get("models:/fraud@champion").version == 3  # the failed move changed nothing


@pytest.mark.parametrize("alias", ["latest", "3", "-x", "has space", "", "champion\n"])
def test_alias_names_that_would_be_ambiguous_are_refused(
    ws: lg.Workspace, classifier: LogisticRegression, alias: str
) -> None:
    ws.models.register(classifier, name="fraud")
    with pytest.raises(lg.InvalidInputError, match="is not valid"):
        ws.models.set_alias("fraud", alias, 1)


@pytest.mark.parametrize("ref", ["fraud", "models:/fraud", "models:/fraud/x", "runs:/abcd1234", "models://fraud/1"])
def test_references_that_are_not_model_references_are_refused(ws: lg.Workspace, ref: str) -> None:
    with pytest.raises(lg.InvalidReferenceError):
        ws.models.get(ref)


def test_a_classifier_signature_has_inputs_label_probabilities_and_classes(
    backend_ws: lg.Workspace, classifier: LogisticRegression, training_frame: pd.DataFrame
) -> None:
    example = training_frame[["amount", "hour"]].head(5)
    mv = backend_ws.models.register(
        classifier, name="fraud", input_example=example, features=["amount", "hour"], description="first cut"
    )
    sig = mv.signature
    assert sig["kind"] == "classifier"
    assert sig["inputs"] == [
        {"name": "amount", "type": "double", "shape": [-1], "nullable": True},
        {"name": "hour", "type": "int64", "shape": [-1], "nullable": True},
    ]
    assert sig["outputs"] == [
        {"name": "label", "type": "int64", "shape": [-1]},
        {"name": "probabilities", "type": "double", "shape": [-1, 2]},
    ]
    assert sig["classes"] == [0, 1]
    assert mv.features == ["amount", "hour"]
    assert mv.description == "first cut"
    assert backend_ws.models.get(mv.uri) == mv  # what was stored is what is read back


def test_a_regressor_signature_has_a_prediction_output(ws: lg.Workspace) -> None:
    x = np.arange(20, dtype=float).reshape(10, 2)
    regressor = LinearRegression().fit(x, x.sum(axis=1))
    sig = ws.models.register(regressor, name="amount", input_example=x[:3]).signature
    assert sig["kind"] == "regressor"
    assert [i["name"] for i in sig["inputs"]] == ["f0", "f1"]
    assert sig["outputs"] == [{"name": "prediction", "type": "double", "shape": [-1]}]
    assert "classes" not in sig


def test_a_model_that_fails_on_its_example_is_named_as_user_code(ws: lg.Workspace) -> None:
    unfitted = DecisionTreeClassifier()
    with pytest.raises(lg.UserCodeError, match="failed on its input_example") as info:
        ws.models.register(unfitted, name="broken", input_example=pd.DataFrame({"a": [1.0]}))
    assert info.value.__cause__ is not None
    with pytest.raises(lg.NotFoundError):
        ws.models.versions("broken")  # nothing half-registered


@pytest.mark.parametrize("name", ["", "-fraud", "fraud/1", "fraud@x", "fraud\n", "a" * 257])
def test_malformed_model_names_are_refused(ws: lg.Workspace, classifier: LogisticRegression, name: str) -> None:
    with pytest.raises(lg.InvalidInputError, match="is not valid"):
        ws.models.register(classifier, name=name)


def test_a_model_that_cannot_be_stored_is_refused(ws: lg.Workspace) -> None:
    with pytest.raises(lg.InvalidInputError, match="not picklable"):
        ws.models.register(lambda x: x, name="lambda")


def test_loading_returns_a_model_that_predicts_the_same(
    backend_ws: lg.Workspace, classifier: LogisticRegression, training_frame: pd.DataFrame
) -> None:
    mv = backend_ws.models.register(classifier, name="fraud")
    loaded = backend_ws.models.load(mv.uri)
    features = training_frame[["amount", "hour"]]
    assert np.array_equal(loaded.predict(features), classifier.predict(features))


def _object_path(ws: lg.Workspace, sha256: str) -> Path:
    return Path(ws.artifacts.root) / "objects" / sha256[:2] / sha256[2:4] / sha256


class _Payload:
    """Unpickling this creates a marker file: proof that bytes were deserialized."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (self.marker, "w"))


def test_a_corrupted_model_is_refused_before_it_is_unpickled(
    ws: lg.Workspace, classifier: LogisticRegression, tmp_path: Path
) -> None:
    mv = ws.models.register(classifier, name="fraud")
    path = _object_path(ws, mv.artifact_sha256)
    assert path.is_file()
    marker = tmp_path / "unpickled"
    os.chmod(path, 0o644)  # objects are stored read-only; an attacker would not care
    path.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(lg.IntegrityError, match=f"artifact {mv.artifact_sha256[:12]} .* is corrupted"):
        ws.models.load(mv.uri)
    assert not marker.exists()
    path.unlink()
    with pytest.raises(lg.NotFoundError, match="is missing"):
        ws.models.load(mv.uri)


def test_deleted_versions_and_models_are_gone_and_their_numbers_are_never_reused(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    _register(backend_ws, "fraud", 3, classifier)
    backend_ws.models.set_alias("fraud", "champion", 3)
    backend_ws.models.delete("fraud", 3)
    with pytest.raises(lg.NotFoundError, match=r"no version 3 \(latest is 2\)"):
        backend_ws.models.get("models:/fraud/3")
    with pytest.raises(lg.NotFoundError, match="has no alias 'champion'"):
        backend_ws.models.get("models:/fraud@champion")  # the alias went with its version
    # models:/fraud/3 named the deleted model; it must never name another one.
    assert backend_ws.models.register(classifier, name="fraud").version == 4
    assert [v.version for v in backend_ws.models.versions("fraud")] == [4, 2, 1]

    backend_ws.models.delete("fraud")
    with pytest.raises(lg.NotFoundError, match="model 'fraud' does not exist"):
        backend_ws.models.get("models:/fraud/1")
    assert "fraud" not in {m["name"] for m in backend_ws.models.list()}
    assert backend_ws.models.register(classifier, name="fraud").version == 5
    with pytest.raises(lg.NotFoundError):
        backend_ws.models.delete("never-registered")
    with pytest.raises(lg.NotFoundError, match="latest is 5"):
        backend_ws.models.delete("fraud", 1)
    actions = [e.action for e in backend_ws.audit.events(limit=20)]
    assert "model_version.deleted" in actions
    assert "model.deleted" in actions


class _Recorder:
    def __init__(self) -> None:
        self.moves: list[AliasMove] = []

    def before_alias_move(self, move: AliasMove) -> None:
        self.moves.append(move)


class _OnlyAfterReview:
    def before_alias_move(self, move: AliasMove) -> None:
        if move.alias == "champion":
            raise lg.PermissionDenied(f"{move.actor} may not set {move.name}@champion without a review")


class _Broken:
    def before_alias_move(self, move: AliasMove) -> None:
        raise KeyError("config")


def test_alias_hooks_see_every_move_and_a_hook_that_raises_changes_nothing(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    _register(backend_ws, "fraud", 2, classifier)
    recorder = _Recorder()
    backend_ws.models.add_alias_hook(recorder)
    backend_ws.models.set_alias("fraud", "champion", 1)
    backend_ws.models.set_alias("fraud", "champion", 2)
    backend_ws.models.delete_alias("fraud", "champion")
    assert [(m.from_version, m.to_version) for m in recorder.moves] == [(None, 1), (1, 2), (2, None)]
    assert {m.actor for m in recorder.moves} == {backend_ws.settings.actor}

    backend_ws.models.set_alias("fraud", "champion", 1)
    before = backend_ws.audit.verify().head_seq
    backend_ws.models.add_alias_hook(_OnlyAfterReview())
    with pytest.raises(lg.PermissionDenied, match="without a review"):
        backend_ws.models.set_alias("fraud", "champion", 2)
    with pytest.raises(lg.PermissionDenied):
        backend_ws.models.delete_alias("fraud", "champion")
    assert backend_ws.models.get("models:/fraud@champion").version == 1
    assert backend_ws.audit.verify().head_seq == before  # no event for a move that did not happen

    backend_ws.models.set_alias("fraud", "staging", 2)  # other aliases still move
    backend_ws.models.add_alias_hook(_Broken())
    with pytest.raises(lg.UserCodeError, match=r"alias hook _Broken .* fraud@staging .* not changed") as info:
        backend_ws.models.set_alias("fraud", "staging", 1)
    assert isinstance(info.value.__cause__, KeyError)
    assert backend_ws.models.get("models:/fraud@staging").version == 2


def test_a_model_logged_from_a_run_points_back_to_it(backend_ws: lg.Workspace, classifier: LogisticRegression) -> None:
    with backend_ws.start_run("train") as run:
        mv = run.log_model(classifier, name="fraud")
    assert mv.run_id == run.id
    assert mv.created_by == backend_ws.settings.actor
    assert mv.flavor == "sklearn"
    with pytest.raises(lg.ConflictError, match="already ended"):
        run.log_model(classifier, name="fraud")


def test_a_hook_may_write_to_the_workspace_while_it_checks_a_move(ws: lg.Workspace) -> None:
    mv = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")

    class LogsItsDecision:
        def before_alias_move(self, move: AliasMove) -> None:
            with ws.start_run("gate", experiment="gates", params={"to": move.to_version}):
                pass

    ws.models.add_alias_hook(LogsItsDecision())
    started = time.monotonic()
    ws.models.set_alias("fraud", "champion", mv.version)
    assert time.monotonic() - started < 10  # no wait on our own write lock
    assert [r.name for r in ws.runs.search(experiment="gates")] == ["gate"]


def test_registering_from_an_unknown_run_is_refused_clearly(ws: lg.Workspace) -> None:
    with pytest.raises(lg.NotFoundError, match="run 'deadbeef' does not exist"):
        ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud", run_id="deadbeef")
    assert ws.models.list() == []


def test_gc_frees_the_bytes_of_a_deleted_version_and_keeps_the_rest(ws: lg.Workspace) -> None:
    ws.models.register(DummyClassifier(strategy="most_frequent").fit([[0], [1]], [0, 1]), name="fraud")
    ws.models.register(DummyClassifier(strategy="prior").fit([[0], [1], [2]], [0, 1, 1]), name="fraud")
    doomed = ws.models.get("models:/fraud/1").artifact_sha256
    ws.models.delete("fraud", 1)
    report = ws.gc(older_than_s=0)
    assert report.removed == 1
    assert not ws.artifacts.exists(doomed)
    assert ws.models.load("models:/fraud/2").predict([[0]]).tolist() == [1]
    assert ws.gc(older_than_s=0).removed == 0


def _serve_with(ws: lg.Workspace, *names: str) -> pd.DataFrame:
    """Feature services (over one view of stored card stats) that model versions can be bound
    to; returns entity rows to build training sets from."""
    folder = Path(ws.home).parent / "stats"
    folder.mkdir(exist_ok=True)
    rows = {"card_id": ["c1"], "ts": [pd.Timestamp("2026-03-01", tz="UTC")], "spend": [3.0], "visits": [1]}
    pd.DataFrame(rows).to_parquet(folder / "part-0.parquet")
    card = Entity("card", join_keys=["card_id"])
    stats = FeatureView(
        name="card_stats",
        entities=[card],
        ttl="1d",
        source=ParquetSource(str(folder), event_time="ts"),
        features={"spend": "float64", "visits": "int64"},
    )
    ws.features.apply([card, stats, *(FeatureService(n, ["card_stats:spend"]) for n in names)])
    return pd.DataFrame({"card_id": ["c1"], "event_timestamp": [pd.Timestamp("2026-03-01 01:00", tz="UTC")]})


def test_a_version_is_bound_to_the_feature_service_it_names_as_it_registers(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    _serve_with(backend_ws, "fraud_v1")
    mv = backend_ws.models.register(classifier, name="fraud", feature_service="fraud_v1")
    binding = backend_ws.features.service_of("models:/fraud@latest")
    assert binding is not None
    assert (binding.service, binding.model_ref, binding.to_dict()["features"]) == (
        "fraud_v1",
        mv.uri,
        ["card_stats:spend"],
    )
    assert [b.model_ref for b in backend_ws.features.registry.bindings(service="fraud_v1")] == [mv.uri]
    # The binding is part of the registration: an unknown service registers nothing.
    with pytest.raises(lg.NotFoundError, match="no feature service named 'nope' is registered"):
        backend_ws.models.register(classifier, name="fraud", feature_service="nope")
    assert [v.version for v in backend_ws.models.versions("fraud")] == [1]
    assert backend_ws.features.service_of(backend_ws.models.register(classifier, name="fraud")) is None


def test_a_version_from_a_run_whose_data_came_through_one_service_is_bound_to_it(
    backend_ws: lg.Workspace, classifier: LogisticRegression
) -> None:
    entity = _serve_with(backend_ws, "fraud_v1", "fraud_v2")
    with backend_ws.start_run("train") as run:
        backend_ws.features.training_set(entity, "fraud_v1", run_id=run.id)
    mv = backend_ws.models.register(classifier, name="fraud", run_id=run.id)
    assert [b.service for b in backend_ws.features.registry.bindings(model=mv)] == ["fraud_v1"]
    # Data from two services: the registration must say which one serving uses.
    with backend_ws.start_run("train-both") as both:
        backend_ws.features.training_set(entity, "fraud_v1", run_id=both.id)
        backend_ws.features.training_set(entity, "fraud_v2", run_id=both.id)
    with pytest.raises(lg.InvalidInputError, match=r"several feature services \(fraud_v1, fraud_v2\)"):
        backend_ws.models.register(classifier, name="fraud", run_id=both.id)
    chosen = backend_ws.models.register(classifier, name="fraud", run_id=both.id, feature_service="fraud_v2")
    assert [b.service for b in backend_ws.features.registry.bindings(model=chosen)] == ["fraud_v2"]
    # Bound to two services by hand, a version cannot tell serving which one to use.
    backend_ws.features.bind("fraud_v1", chosen)
    with pytest.raises(lg.ConflictError, match="bound to several feature services"):
        backend_ws.features.service_of(chosen.uri)

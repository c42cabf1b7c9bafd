"""The contract registry on every metadata backend: numbering, idempotence, refusals that list
every violation, the governing mode, consumers, and the audit trail."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.data import Compatibility, Contract, IncompatibleContract


def contract(**fields: Any) -> Contract:
    columns = fields.pop("columns")
    spec = {name: {"type": c} if isinstance(c, str) else c for name, c in columns.items()}
    return Contract.from_dict({"name": "tx", **fields, "columns": spec})


V1 = contract(columns={"id": {"type": "string", "nullable": False}, "amount": "float64", "f": "int64"})


def events(ws: lg.Workspace, action: str) -> list[Any]:
    return [e for e in ws.audit.events() if e.action == action]


def test_versions_are_numbered_and_an_identical_contract_is_registered_once(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    first = contracts.register(V1)
    assert (first.version, first.ref, first.owner) == (1, "tx@1", backend_ws.settings.actor)
    assert first.compatibility is Compatibility.BACKWARD
    assert contracts.register(V1) == first
    assert contracts.register(V1.model_copy(update={"version": 1})) == first
    v2 = contract(columns={**V1.model_dump()["columns"], "note": {"type": "string"}})
    second = contracts.register(v2)
    assert second.version == 2
    assert second.contract.version == 2
    assert "note" in second.contract.columns
    assert [r.version for r in contracts.versions("tx")] == [2, 1]
    assert contracts.get("tx") == second
    assert contracts.get("tx", "latest") == second
    assert contracts.get("tx", 1) == first
    assert contracts.get("tx@1") == first
    assert [(r.name, r.version, n) for r, n in contracts.list()] == [("tx", 2, 2)]
    # The document as stored reads back as the same contract.
    assert Contract.from_dict(second.to_dict()["contract"]) == second.contract
    registered = events(backend_ws, "contract.registered")
    assert sorted(e.object_id for e in registered) == ["tx/1", "tx/2"]
    assert {e.actor for e in registered} == {backend_ws.settings.actor}
    assert registered[0].details["content_hash"] in {first.content_hash, second.content_hash}


def test_a_declared_version_must_be_the_next_one(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    with pytest.raises(lg.ConflictError, match="cannot be registered as version 3: the next version is 1"):
        contracts.register(V1.model_copy(update={"version": 3}))
    contracts.register(V1)
    changed = contract(version=1, columns={"id": {"type": "string", "nullable": False}})
    with pytest.raises(
        lg.ConflictError, match="version 1 is already registered with other content; the next version is 2"
    ):
        contracts.register(changed)
    assert contracts.register(changed.model_copy(update={"version": 2})).version == 2


def test_unknown_contracts_and_versions_are_named(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    with pytest.raises(lg.NotFoundError, match="no contract named 'tx' is registered"):
        contracts.get("tx")
    contracts.register(V1)
    with pytest.raises(lg.NotFoundError, match=r"contract 'tx' has no version 7 \(latest is 1\)"):
        contracts.get("tx@7")
    with pytest.raises(lg.InvalidInputError, match="names no contract version"):
        contracts.get("tx@seven")


def test_a_breaking_version_is_refused_with_every_violation_and_nothing_written(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    contracts.register(V1.model_copy(update={"compatibility": Compatibility.FULL}))
    breaking = contract(
        columns={
            "id": {"type": "string", "nullable": True},
            "amount": "float32",
            "added": {"type": "int64", "nullable": False},
        }
    )
    before = len(backend_ws.audit.events())
    with pytest.raises(IncompatibleContract) as refused:
        contracts.register(breaking)
    found = {(v.rule, v.column) for v in refused.value.violations}
    assert found == {
        ("became_nullable", "id"),  # full compatibility is inherited: the new file does not say
        ("type_changed", "amount"),
        ("added_required_column", "added"),
    }
    message = str(refused.value)
    assert message.startswith(
        "contract 'tx' cannot be registered as version 2 under full compatibility, 3 problems: (1)"
    )
    for v in refused.value.violations:
        assert v.message in message
    assert refused.value.exit_code == 1
    assert [r.version for r in contracts.versions("tx")] == [1]
    assert len(backend_ws.audit.events()) == before
    assert {(v.rule, v.column) for v in contracts.check(breaking)} == found
    assert {v.rule for v in contracts.check(breaking, "backward")} == {"type_changed", "added_required_column"}


def test_the_transitive_case_through_the_registry(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    contracts.register(contract(columns={"id": "string", "f": {"type": "int64", "nullable": False}}))
    contracts.register(contract(columns={"id": "string"}))
    v3 = contract(columns={"id": "string", "f": "string"})
    assert contracts.check(v3) == []
    with pytest.raises(
        IncompatibleContract, match=r"under backward_transitive compatibility, 1 problem: \(1\) column 'f'"
    ):
        contracts.register(v3.model_copy(update={"compatibility": Compatibility.BACKWARD_TRANSITIVE}))
    assert contracts.register(v3).version == 3


def test_the_mode_and_owner_are_the_subjects_unless_the_new_version_changes_them(backend_ws: lg.Workspace) -> None:
    contracts = backend_ws.data.contracts
    first = contracts.register(
        contract(owner="payments-data", compatibility="full", columns={"a": {"type": "int64", "nullable": False}})
    )
    nullable = contract(columns={"a": "int64"})
    assert contracts.governing_mode(nullable) is Compatibility.FULL
    assert [v.rule for v in contracts.check(nullable)] == ["became_nullable"]
    loosened = contracts.register(nullable.model_copy(update={"compatibility": Compatibility.BACKWARD}))
    assert (loosened.version, loosened.compatibility, loosened.owner) == (2, Compatibility.BACKWARD, first.owner)
    last = events(backend_ws, "contract.registered")[0]
    assert last.object_id == "tx/2"
    assert last.details["compatibility_from"] == "full"
    assert last.details["compatibility"] == "backward"
    # Re-registering the same file, which names no mode, keeps the subject's mode: no new version.
    assert contracts.register(nullable.model_copy(update={"compatibility": Compatibility.BACKWARD})) == loosened
    assert contracts.register(nullable) == loosened


def test_a_model_trained_on_data_that_passed_the_contract_protects_its_columns(backend_ws: lg.Workspace) -> None:
    ws = backend_ws
    contracts = ws.data.contracts
    contracts.register(contract(compatibility="none", columns={"amount": "float64", "hour": "int64", "note": "string"}))
    x = pa.table({"amount": [1.0, 2.0, 3.0, 4.0], "hour": [1, 2, 3, 4]}).to_pandas()
    with ws.start_run("train") as run:
        data = run.log_dataset(x.assign(note="x"), name="tx-batch")
        ws.datasets.add_fact(data.uri, "contract", {"name": "tx", "version": 1, "passed": True})
        run.log_model(DummyClassifier().fit(x, [0, 1, 0, 1]), name="fraud", input_example=x.head(2))
    with ws.start_run("untracked") as run:  # data that never passed the contract links nothing
        run.log_dataset(x, name="other")
        run.log_model(DummyClassifier().fit(x, [0, 1, 0, 1]), name="loose", input_example=x.head(2))
    consumers = contracts.consumers("tx")
    assert [(str(c), c.contract_version, c.columns) for c in consumers] == [("model fraud v1", 1, ("amount", "hour"))]

    dropped = contract(columns={"hour": "int64", "note": "string"})
    with pytest.raises(IncompatibleContract, match="model fraud v1 uses column 'amount'") as refused:
        contracts.register(dropped)  # mode none: only the consumer rule holds
    assert [(v.rule, v.column, v.consumer, v.version) for v in refused.value.violations] == [
        ("consumer_uses_column", "amount", "model fraud v1", 1)
    ]
    assert [v.column for v in contracts.check(contract(columns={"amount": "string", "hour": "int64"}))] == ["amount"]
    # Dropping a column no consumer reads is fine; so is everything once the model is gone.
    assert contracts.register(contract(columns={"amount": "float64", "hour": "int64"})).version == 2
    ws.models.delete("fraud")
    assert contracts.consumers("tx") == []
    assert contracts.register(dropped).version == 3


def test_a_failed_outcome_links_no_consumer(backend_ws: lg.Workspace) -> None:
    ws = backend_ws
    ws.data.contracts.register(contract(columns={"amount": "float64"}))
    x = pa.table({"amount": [1.0, 2.0]}).to_pandas()
    with ws.start_run("train") as run:
        data = run.log_dataset(x, name="tx-batch")
        ws.datasets.add_fact(data.uri, "contract", {"name": "tx", "version": 1, "passed": False})
        run.log_model(DummyClassifier().fit(x, [0, 1]), name="fraud", input_example=x)
    assert ws.data.contracts.consumers("tx") == []


def test_feature_views_plug_in_as_consumer_providers(backend_ws: lg.Workspace) -> None:
    from lockgate.data import Consumer

    class FeatureViews:
        def consumers_of(self, contract: str) -> list[Consumer]:
            return [Consumer(kind="feature view", name="card_aggregates", contract_version=1, columns=("amount",))]

    contracts = backend_ws.data.contracts
    contracts.register(contract(columns={"amount": "float64", "f": "int64"}))
    contracts.add_consumer_provider(FeatureViews())
    with pytest.raises(IncompatibleContract, match="feature view card_aggregates uses column 'amount'"):
        contracts.register(contract(columns={"f": "int64"}))


def test_registering_from_a_yaml_file(backend_ws: lg.Workspace, tmp_path: Any) -> None:
    path = tmp_path / "tx.yaml"
    path.write_text(V1.to_yaml())
    assert backend_ws.data.contracts.register(path).version == 1
    assert backend_ws.data.contracts.register(str(path)).version == 1
    path.write_text("name: tx\ncolumns:\n  a: {type: int65}\n")
    with pytest.raises(lg.InvalidInputError, match="unknown type 'int65'"):
        backend_ws.data.contracts.register(path)


DOCS = Path(__file__).resolve().parents[2] / "docs" / "contracts.md"


def test_the_docs_contract_examples_parse_and_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOCS.read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        Contract.from_yaml(block, source="the docs' example")
    monkeypatch.chdir(tmp_path)
    for code in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        exec(compile(code, str(DOCS), "exec"), {"__name__": "docs"})

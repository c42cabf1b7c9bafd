"""``ws.data``: contracts resolved from every spelling, references from the data sets, the gate
that admits only passing data, and the check a pipeline makes before it trains."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.data import Contract, ContractNotPassed

CONTRACT = Contract.from_yaml("""
name: payments
columns:
  payment_id: {type: string, nullable: false, unique: true}
  amount: {type: float64, min: 0}
  country: {type: string, max_new_categories: 0.0}
""")
GOOD = pa.table({"payment_id": ["a", "b", "c"], "amount": [1.0, 2.0, 3.0], "country": ["DE", "FR", "DE"]})
BAD = pa.table({"payment_id": ["a", "b", "c"], "amount": [1.0, -2.0, 3.0], "country": ["DE", "FR", "DE"]})


def test_a_contract_is_found_from_every_spelling(ws: lg.Workspace, tmp_path: Path) -> None:
    registered = ws.data.contracts.register(CONTRACT)
    path = tmp_path / "payments.yaml"
    path.write_text(CONTRACT.to_yaml())
    for spelling in (CONTRACT, registered, "payments", "payments@1", "payments@latest", path, str(path)):
        assert ws.data.contract(spelling).version == 1, spelling
    assert ws.data.validate(GOOD, path).contract_version == 1
    # Content that is not registered has no version, whatever it claims.
    other = Contract.from_dict({"name": "payments", "version": 1, "columns": {"amount": {"type": "float64"}}})
    assert ws.data.contract(other).version is None
    with pytest.raises(lg.NotFoundError, match="contract 'payments' has no version 4"):
        ws.data.contract("payments@4")
    with pytest.raises(lg.InvalidInputError, match=r"contract file missing\.yaml does not exist"):
        ws.data.contract("missing.yaml")


def test_a_reference_is_a_data_set_a_path_or_a_table(ws: lg.Workspace, tmp_path: Path) -> None:
    ws.datasets.log(GOOD, name="payments")
    batch = pa.table({"payment_id": ["d"], "amount": [4.0], "country": ["XX"]})
    for reference in (
        "payments@latest",
        "payments",
        f"datasets:/payments@{ws.datasets.get('payments').content_hash[:8]}",
        GOOD,
    ):
        report = ws.data.validate(batch, CONTRACT, reference=reference)
        assert [f.check for f in report.failures] == ["new_categories"], reference
    assert ws.data.validate(batch, CONTRACT).passed  # no reference: the comparison is skipped
    pq.write_table(GOOD, tmp_path / "yesterday.parquet")
    assert not ws.data.validate(batch, CONTRACT, reference=tmp_path / "yesterday.parquet").passed
    assert not ws.data.validate(batch, CONTRACT, reference=str(tmp_path / "yesterday.parquet")).passed
    with pytest.raises(lg.NotFoundError, match="dataset 'datasets:/nothing@latest' does not exist"):
        ws.data.validate(batch, CONTRACT, reference="nothing@latest")


def test_the_gate_admits_passing_data_and_records_the_contract_version(ws: lg.Workspace) -> None:
    with pytest.raises(lg.InvalidInputError, match="contract 'payments' is not registered"):
        ws.data.admit(GOOD, name="payments", contract=CONTRACT)
    ws.data.contracts.register(CONTRACT)
    refused = ws.data.admit(BAD, name="payments", contract="payments")
    assert not refused.passed
    assert refused.dataset is None
    assert ws.datasets.versions("payments") == []
    admitted = ws.data.admit(GOOD, name="payments", contract="payments")
    assert admitted.passed
    assert admitted.dataset is not None
    assert admitted.outcome is not None
    assert (admitted.outcome.contract, admitted.outcome.version, admitted.outcome.passed) == ("payments", 1, True)
    assert ws.data.require_passed("payments@latest", "payments") == admitted.outcome
    [(version, outcomes)] = ws.data.versions("payments")
    assert version == admitted.dataset
    assert [o.to_dict()["passed"] for o in outcomes] == [True]
    fact_events = ws.audit.events(object_kind="dataset", object_id=admitted.dataset.node_id)
    assert "dataset.fact_added" in [e.action for e in fact_events]


def test_quarantine_admits_the_rows_that_pass(ws: lg.Workspace) -> None:
    quarantining = CONTRACT.model_copy(update={"on_error": "quarantine"})
    ws.data.contracts.register(quarantining)
    admitted = ws.data.admit(BAD, name="payments", contract="payments")
    assert admitted.passed
    assert admitted.report.quarantined is not None
    assert admitted.report.quarantined.num_rows == 1
    assert admitted.dataset is not None
    assert admitted.dataset.num_rows == 2
    assert admitted.outcome is not None
    assert admitted.outcome.rows == 2
    assert ws.datasets.load(admitted.dataset.uri).column("payment_id").to_pylist() == ["a", "c"]


def test_a_pipeline_is_refused_data_that_did_not_pass(ws: lg.Workspace) -> None:
    ws.data.contracts.register(CONTRACT)
    never = ws.datasets.log(GOOD, name="payments")
    with pytest.raises(ContractNotPassed) as refused:
        ws.data.require_passed(never.uri, "payments")
    assert str(refused.value) == (
        f"data set {never.uri} has not passed contract payments@1 (it was never validated against it); "
        "validate it first, e.g. lockgate data validate PATH --contract payments@1 --dataset payments"
    )
    assert refused.value.exit_code == 1
    failed = ws.datasets.log(BAD, name="payments")
    ws.data.record(failed, ws.data.validate(BAD, "payments"))
    with pytest.raises(ContractNotPassed, match=r"its last validation against it failed with 1 error-level failure\)"):
        ws.data.require_passed(failed.uri, "payments")
    ws.data.record(never, ws.data.validate(GOOD, "payments"))
    assert ws.data.require_passed(never, "payments").passed
    # A new contract version is a new bar: data that passed only version 1 must be checked again.
    ws.data.contracts.register(CONTRACT.model_copy(update={"description": "v2"}))
    with pytest.raises(ContractNotPassed, match=r"has not passed contract payments@2 \(it passed only version 1\)"):
        ws.data.require_passed(never, "payments")
    assert ws.data.require_passed(never, "payments@1").version == 1
    assert ws.data.require_passed(never, "payments", version=1).version == 1


def test_record_refuses_a_report_it_cannot_stand_behind(ws: lg.Workspace) -> None:
    version = ws.datasets.log(GOOD, name="payments")
    with pytest.raises(lg.InvalidInputError, match="as an unregistered file, so there is no version to record"):
        ws.data.record(version, ws.data.validate(GOOD, CONTRACT))
    ws.data.contracts.register(CONTRACT)
    with pytest.raises(lg.InvalidInputError, match=r"the report covers 1 row but data set .* has 3"):
        ws.data.record(version, ws.data.validate(GOOD.slice(0, 1), "payments"))


def test_admitting_with_quarantine_registers_the_good_rows_and_keeps_the_rest(ws: lg.Workspace) -> None:
    ws.data.contracts.register(
        Contract.from_dict({"name": "held", "on_error": "quarantine", "columns": {"x": {"type": "int64", "min": 0}}})
    )
    admitted = ws.data.admit(pa.table({"x": [1, -2, 3]}), name="held", contract="held")
    assert admitted.dataset is not None
    assert admitted.quarantine is not None
    assert (admitted.dataset.num_rows, admitted.quarantine.num_rows) == (2, 1)
    assert ws.datasets.load(admitted.quarantine.uri).to_pylist() == [{"x": -2}]
    facts = {f["key"]: f["value"] for f in ws.datasets.facts(admitted.dataset.uri)}
    assert facts["quarantine"] == {"dataset": admitted.quarantine.uri, "rows": 1}

"""The contract gate: bad data stops a pipeline before training, with its report kept."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import lockgate as lg
from lockgate.pipelines import DataRef, PipelineFailed, contract_gate, pipeline, run_pipeline, step
from lockgate.pipelines.checks import run_checks

CONTRACT = """
name: payments
columns:
  id: {type: int64, nullable: false, unique: true}
  amount: {type: float64, min: 0, max: 1000}
"""


@step
def read(source: DataRef) -> pa.Table:
    return source.read()


@step
def total(data: pa.Table) -> dict[str, float]:
    return {"total": float(sum(data["amount"].to_pylist()))}


@pipeline
def gated(source: DataRef, contract: DataRef):
    return total(contract_gate(read(source), contract))


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    contract = tmp_path / "payments.yaml"
    contract.write_text(CONTRACT)
    data = tmp_path / "payments.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3], "amount": [10.0, 20.0, 30.0]}), data)
    return data, contract


def _files(ws: lg.Workspace, run_id: str) -> dict[str, bytes]:
    return {
        a["path"]: ws.artifacts.get_bytes(a["sha256"])
        for a in ws.runs.artifacts(run_id)
        if a["path"].startswith("files/")
    }


def test_data_that_passes_goes_on_and_the_report_is_kept_in_lineage(ws: lg.Workspace, files: tuple[Path, Path]) -> None:
    data, contract = files
    result = run_pipeline(
        ws, gated, params={"source": DataRef(str(data)), "contract": DataRef(str(contract))}, executor="inline"
    )
    assert result.output("total") == {"total": 60.0}
    gate_run = result.step_run("contract_gate") or ""
    kept = _files(ws, gate_run)
    assert json.loads(kept["files/report.json"])["passed"] is True
    assert b"<html" in kept["files/report.html"]
    graph = ws.lineage_of(f"runs:/{gate_run}", direction="downstream")
    relations = {e.relation for e in graph.edges}
    assert {"file:report.json", "file:report.html"} <= relations


def test_a_bad_batch_stops_the_pipeline_before_training_with_the_report_attached(
    ws: lg.Workspace, files: tuple[Path, Path]
) -> None:
    data, contract = files
    pq.write_table(pa.table({"id": [1, 1, 3], "amount": [10.0, 5000.0, 30.0]}), data)
    with pytest.raises(PipelineFailed) as failed:
        run_pipeline(
            ws, gated, params={"source": DataRef(str(data)), "contract": DataRef(str(contract))}, executor="inline"
        )
    statuses = {s.name: s.status for s in failed.value.result.steps}
    assert statuses == {"read": "SUCCEEDED", "contract_gate": "FAILED", "total": "SKIPPED"}
    gate_run = ws.runs.get(failed.value.result.step_run("contract_gate") or "")
    assert "ContractViolation: FAILED: 3 rows against contract payments; 2 errors" in gate_run.tags["lockgate.error"]
    report = json.loads(_files(ws, gate_run.id)["files/report.json"])
    assert report["passed"] is False
    assert {(f["check"], f["column"]) for f in report["failures"]} >= {("unique", "id"), ("max", "amount")}


def test_an_edited_contract_is_never_a_stale_cache_hit(ws: lg.Workspace, files: tuple[Path, Path]) -> None:
    data, contract = files
    params = {"source": DataRef(str(data)), "contract": DataRef(str(contract))}
    run_pipeline(ws, gated, params=params, executor="inline")
    assert run_pipeline(ws, gated, params=params, executor="inline").cache_hits == 3
    contract.write_text(CONTRACT.replace("max: 1000", "max: 15"))
    with pytest.raises(PipelineFailed):
        run_pipeline(ws, gated, params=params, executor="inline")


def test_pipeline_check_reads_every_gated_contract(ws: lg.Workspace, files: tuple[Path, Path]) -> None:
    data, contract = files
    graph = gated.trace(source=DataRef(str(data)), contract=DataRef(str(contract)))
    (ok,) = [r for r in run_checks(graph, ws) if r.name == "contracts"]
    assert ok.ok
    assert "payments (not registered)" in ok.message

    ws.data.contracts.register(contract)
    contract.write_text(
        CONTRACT.replace("  amount: {type: float64, min: 0, max: 1000}\n", "  amount: {type: string}\n")
    )
    (broken,) = [r for r in run_checks(graph, ws) if r.name == "contracts"]
    assert not broken.ok
    assert "amount" in broken.message

    contract.write_text("name: payments\ncolumns: {id: {type: int65}}\n")
    (unparsable,) = [r for r in run_checks(graph, ws) if r.name == "contracts"]
    assert not unparsable.ok
    assert "unknown type 'int65'" in unparsable.message


def test_quarantined_rows_are_held_back_and_kept_with_the_report(ws: lg.Workspace, files: tuple[Path, Path]) -> None:
    data, contract = files
    contract.write_text("on_error: quarantine\n" + CONTRACT)
    pq.write_table(pa.table({"id": [1, 2, 3], "amount": [10.0, 5000.0, 30.0]}), data)
    result = run_pipeline(
        ws, gated, params={"source": DataRef(str(data)), "contract": DataRef(str(contract))}, executor="inline"
    )
    assert result.output("total") == {"total": 40.0}  # the bad row never reached the sum
    held = pq.read_table(
        pa.BufferReader(_files(ws, result.step_run("contract_gate") or "")["files/quarantine.parquet"])
    )
    assert held.to_pylist() == [{"id": 2, "amount": 5000.0}]

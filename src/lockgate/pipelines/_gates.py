"""Ready-made gate steps, and the checks the data and feature capabilities add to
``lockgate pipeline check``: put a gate between the data and the training, and bad data
stops the pipeline before it can poison a model.

>>> import pyarrow as pa, tempfile, pathlib
>>> contract = pathlib.Path(tempfile.mkdtemp()) / "tiny.yaml"
>>> _ = contract.write_text("name: tiny\\ncolumns: {x: {type: int64, min: 0}}\\n")
>>> contract_gate(pa.table({"x": [1, 2]}), DataRef(str(contract))).num_rows
PASSED: 2 rows against contract tiny; 0 errors, 0 warnings (... s)
2
>>> contract_gate(pa.table({"x": [1, -2]}), DataRef(str(contract)))
Traceback (most recent call last):
...
lockgate.pipelines._gates.ContractViolation: FAILED: 2 rows against contract tiny; 1 error, 0 warnings (... s)
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from lockgate.errors import CheckFailed, LockgateError
from lockgate.features import OnDemandExamplesCheck
from lockgate.pipelines._context import StepContext
from lockgate.pipelines._dataref import DataRef
from lockgate.pipelines._dsl import PipelineGraph, step
from lockgate.pipelines.checks import CheckResult, register_check

__all__ = ["ContractCheck", "ContractViolation", "contract_gate"]


class ContractViolation(CheckFailed):
    """Data broke an error-level rule of its contract; the gate stopped the pipeline."""


@step
def contract_gate(
    data: pa.Table, contract: DataRef, now: str | None = None, ctx: StepContext = StepContext.INJECTED
) -> pa.Table:
    """Validate ``data`` against ``contract`` (a YAML file, as a DataRef so an edited contract
    is never a stale cache hit) and pass on the rows that may go on: all of them, or under
    ``on_error: quarantine`` the ones that passed. An error-level failure stops the pipeline.

    The report is kept with the step run, passed or failed, as ``files/report.json`` and
    ``files/report.html``, and quarantined rows as ``files/quarantine.parquet`` (all linked
    in lineage). ``now`` (ISO 8601) is the clock freshness
    rules read; pin it for a reproducible pipeline, or leave it out for the current time.
    """
    from lockgate.data import Contract, report_html, report_json, validate, verdict

    checked = Contract.load(contract.path)
    report = validate(data, checked, now=datetime.fromisoformat(now) if now else None)
    ctx.log_artifact("report.json", report_json(report))
    ctx.log_artifact("report.html", report_html(report))
    for failure in report.failures:
        print(f"{failure.severity}: {failure.message}")
    if report.quarantined is not None and report.quarantined.num_rows:
        # The rows held back go with the report (linked in lineage), counted in its verdict.
        held = io.BytesIO()
        pq.write_table(report.quarantined, held, compression="zstd")
        ctx.log_artifact("quarantine.parquet", held.getvalue())
    line = verdict(report)
    print(line)
    if not report.passed:
        raise ContractViolation(line)
    kept: pa.Table = report.passed_rows if report.passed_rows is not None else data
    return kept


class ContractCheck:
    """For ``lockgate pipeline check``: every contract a gate reads parses, and (with a
    workspace) could be registered without breaking its registered versions or their consumers."""

    name = "contracts"

    def run(self, graph: PipelineGraph, ws: Any | None) -> CheckResult:
        from lockgate.data import Contract

        gates = [n for n in graph.nodes if n.step is contract_gate]
        if not gates:
            return CheckResult(name=self.name, ok=True, message="no contract gate in this pipeline")
        problems: list[str] = []
        evidence: dict[str, Any] = {}
        for node in gates:
            ref = node.arguments.get("contract")
            if not isinstance(ref, DataRef):
                problems.append(
                    f"{node.name}: its contract is computed by a step, so it cannot be checked before a run"
                )
                continue
            try:
                contract = Contract.load(ref.path)
            except LockgateError as exc:
                problems.append(f"{node.name}: {exc}")
                continue
            state = "not registered"
            if ws is not None:
                violations = ws.data.contracts.check(contract)
                problems += [f"{node.name}: {v.message}" for v in violations]
                found = ws.data.contracts.find(contract)
                if found is not None:
                    state = f"registered as v{found.version}"
                elif any(r.name == contract.name for r, _ in ws.data.contracts.list()):
                    state = "differs from every registered version"
            evidence[node.name] = {"contract": contract.name, "file": ref.uri, "state": state}
        if problems:
            return CheckResult(name=self.name, ok=False, message="; ".join(problems), evidence=evidence)
        named = ", ".join(f"{e['contract']} ({e['state']})" for e in evidence.values())
        return CheckResult(
            name=self.name, ok=True, message=f"contracts parse and stay compatible: {named}", evidence=evidence
        )


register_check(ContractCheck())
# The feature store's on-demand examples run as unit checks too; registered from this layer
# because features (domain) may not import pipelines (use-case) to do it itself.
register_check(OnDemandExamplesCheck(CheckResult))

"""``ws.data``: validate data against contracts, admit data set versions through the gate, and
tell a pipeline whether a data set version passed its contract.

A data set version records each contract outcome as a fact (``contract``: name, version,
passed, counts), written with its audit event in one transaction. A pipeline calls
:meth:`DataService.require_passed` before it trains; the contract registry later follows
those facts downstream in lineage to find the models that read a contract's columns.

>>> import pyarrow as pa, lockgate as lg, tempfile
>>> from lockgate.data import Contract
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> c = ws.data.contracts.register(Contract.from_dict({"name": "tiny", "columns": {"x": {"type": "int64", "min": 0}}}))
>>> admitted = ws.data.admit(pa.table({"x": [1, 2]}), name="tiny", contract="tiny")
>>> admitted.passed, admitted.dataset.num_rows
(True, 2)
>>> ws.data.require_passed(admitted.dataset.uri, "tiny").version
1
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lockgate.clock import to_iso
from lockgate.data._contract import Contract
from lockgate.data._registry import CONTRACT_FACT, ContractRegistry, RegisteredContract, parse_contract_ref
from lockgate.entities import DatasetVersion
from lockgate.errors import CheckFailed, InvalidInputError, NotFoundError
from lockgate.tracking import DatasetService

if TYPE_CHECKING:  # for annotations only: the engine itself is imported when data is checked
    from lockgate.data._validate import ValidationReport

__all__ = ["Admission", "ContractNotPassed", "ContractOutcome", "DataService"]

_CONTRACT_FILES = (".yaml", ".yml", ".json")


class ContractNotPassed(CheckFailed):
    """A data set version has not passed the contract a pipeline requires of it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ContractOutcome:
    """What validating a data set version against one contract version found."""

    dataset: str
    contract: str
    version: int
    passed: bool
    errors: int
    warnings: int
    rows: int
    recorded_at: int
    recorded_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "contract": self.contract,
            "version": self.version,
            "passed": self.passed,
            "errors": self.errors,
            "warnings": self.warnings,
            "rows": self.rows,
            "recorded_at": to_iso(self.recorded_at),
            "recorded_by": self.recorded_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """The gate's verdict: the report, and the data set version registered (with the outcome
    recorded on it) when the data passed."""

    report: ValidationReport
    dataset: DatasetVersion | None
    outcome: ContractOutcome | None
    quarantine: DatasetVersion | None = None

    @property
    def passed(self) -> bool:
        return self.dataset is not None


class DataService:
    """``ws.data``: contracts (``ws.data.contracts``), validation, and the data gate."""

    def __init__(self, datasets: DatasetService, contracts: ContractRegistry) -> None:
        # Writes go through the data set service, which carries the acting identity.
        self._datasets = datasets
        self.contracts = contracts

    # -- contracts -------------------------------------------------------------------------

    def contract(self, contract: Contract | RegisteredContract | str | os.PathLike[str]) -> Contract:
        """The contract behind a Contract, a registered one, a YAML path, or ``name`` / ``name@version``.

        A contract given by value or file that is exactly a registered version comes back
        with that version's number, so what it validates can be recorded.
        """
        if isinstance(contract, RegisteredContract):
            return contract.contract
        if isinstance(contract, Contract):
            found = self.contracts.find(contract)
            if found is not None:
                return found.contract
            # Content that is not registered has no version, whatever the file claims: a report
            # on it must never be recorded as passing a registered version it differs from.
            return contract if contract.version is None else contract.model_copy(update={"version": None})
        if isinstance(contract, (str, os.PathLike)):
            text = os.fspath(contract)
            path = Path(text)
            if path.is_file() or path.suffix.lower() in _CONTRACT_FILES or os.sep in text or "/" in text:
                return self.contract(Contract.load(path))
            name, version = parse_contract_ref(text)
            return self.contracts.get(name, version).contract
        raise InvalidInputError(
            f"cannot use a {type(contract).__name__} as a contract; pass a Contract, a YAML path or NAME[@VERSION]"
        )

    # -- validating ------------------------------------------------------------------------

    def validate(
        self,
        data: Any,
        contract: Contract | RegisteredContract | str | os.PathLike[str],
        *,
        reference: Any | None = None,
        now: datetime | None = None,
    ) -> ValidationReport:
        """Check ``data`` (a table, frame or path) against ``contract``; nothing is written.

        ``reference`` is what drift-style rules compare with: a data set such as
        ``"transactions@latest"`` or ``"datasets:/transactions@3fa2…"``, a data path, or a table.
        """
        from lockgate.data._validate import validate  # loaded on first use: CLI start stays lean

        return validate(data, self.contract(contract), reference=self.reference(reference), now=now)

    def reference(self, reference: Any | None) -> Any:
        """What drift-style rules compare with: a data set reference (``transactions@latest``,
        ``datasets:/transactions@3fa2…``) as its stored rows; a path or URI (it holds a '/'),
        a table or a frame as it is, for the validator to read."""
        if isinstance(reference, DatasetVersion):
            reference = reference.uri
        if isinstance(reference, os.PathLike):
            return os.fspath(reference)
        if isinstance(reference, str) and "/" not in reference.removeprefix("datasets:/"):
            return self._datasets.load(_dataset_ref(reference))
        return reference

    # -- the gate --------------------------------------------------------------------------

    def record(self, dataset: str | DatasetVersion, report: ValidationReport) -> ContractOutcome:
        """Record on a data set version what validating it found (audited).

        The report must come from a registered contract version, and cover the version's rows.
        """
        version = self._dataset(dataset)
        name, number = report.contract_name, report.contract_version
        if number is None:
            raise InvalidInputError(
                f"the report checked contract '{name}' as an unregistered file, so there is no version to record; "
                "register it first: lockgate data contract register FILE"
            )
        registered = self.contracts.get(name, int(number))
        if report.rows != version.num_rows:
            raise InvalidInputError(
                f"the report covers {report.rows} row{'s' if report.rows != 1 else ''} but data set {version.uri} "
                f"has {version.num_rows}; "
                "validate that data set version itself"
            )
        value = {
            "name": registered.name,
            "version": registered.version,
            "content_hash": registered.content_hash,
            "passed": bool(report.passed),
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "rows": int(report.rows),
        }
        self._datasets.add_fact(version.uri, CONTRACT_FACT, value)
        return self.outcomes(version)[-1]

    def admit(
        self,
        data: Any,
        *,
        name: str,
        contract: Contract | RegisteredContract | str | os.PathLike[str],
        reference: Any | None = None,
        now: datetime | None = None,
        source_uri: str | None = None,
    ) -> Admission:
        """The data gate: validate ``data`` and, only if it passes, register it as a version of
        data set ``name`` that records the contract version it passed.

        Under ``on_error: quarantine`` the rows that passed are registered and the rest stay in
        the report. A failing batch registers nothing.
        """
        checked = self.contract(contract)
        if checked.version is None:
            raise InvalidInputError(
                f"contract '{checked.name}' is not registered (or differs from every registered version), so a "
                "data set cannot record passing it; register it first: lockgate data contract register FILE"
            )
        if isinstance(data, (str, os.PathLike)) and source_uri is None:
            text = os.fspath(data)
            source_uri = text if "://" in text else str(Path(text).resolve())
        rows = self.reference(reference)
        report = self.validate(data, checked, reference=rows, now=now)
        if not report.passed:
            return Admission(report=report, dataset=None, outcome=None)
        table = report.data  # a report that passed always carries the rows it checked
        assert table is not None
        recorded = report
        if report.quarantined is not None and report.quarantined.num_rows:
            # What is registered is the rows that passed, so that is what the outcome must be
            # about: they are validated on their own (a table rule may still fail them).
            table = report.passed_rows
            recorded = self.validate(table, checked, reference=rows, now=now)
            if not recorded.passed:
                return Admission(report=recorded, dataset=None, outcome=None)
        version = self._datasets.log(table, name=name, source_uri=source_uri)
        outcome = self.record(version, recorded)
        quarantine = None
        if report.quarantined is not None and report.quarantined.num_rows:
            # The rows held back are kept, as their own data set version, and the admitted
            # version names them: someone will want to look at (and maybe repair) them.
            quarantine = self._datasets.log(report.quarantined, name=f"{name}.quarantine", source_uri=source_uri)
            self._datasets.add_fact(version.uri, "quarantine", {"dataset": quarantine.uri, "rows": quarantine.num_rows})
        return Admission(report=report, dataset=version, outcome=outcome, quarantine=quarantine)

    def outcomes(self, dataset: str | DatasetVersion) -> list[ContractOutcome]:
        """Every contract outcome recorded on a data set version, oldest first."""
        version = self._dataset(dataset)
        return [
            _outcome(version, f["value"], f["created_at"], f["created_by"])
            for f in self._datasets.facts(version.uri)
            if f["key"] == CONTRACT_FACT and isinstance(f["value"], dict)
        ]

    def require_passed(
        self,
        dataset: str | DatasetVersion,
        contract: str | RegisteredContract,
        *,
        version: int | None = None,
    ) -> ContractOutcome:
        """Refuse to go on unless ``dataset`` passed ``contract`` (its latest version unless
        ``version`` or ``name@version`` says otherwise): what a pipeline calls before training.

        Raises :class:`ContractNotPassed`, naming the data set, the contract and the fix.
        """
        if isinstance(contract, RegisteredContract):
            registered = contract
        else:
            name, pinned = parse_contract_ref(contract)
            registered = self.contracts.get(name, version if version is not None else pinned)
        target = self._dataset(dataset)
        outcomes = [o for o in self.outcomes(target) if o.contract == registered.name]
        mine = [o for o in outcomes if o.version == registered.version]
        if mine and mine[-1].passed:
            return mine[-1]
        if mine:
            errors = mine[-1].errors
            why = f"its last validation against it failed with {errors} error-level failure{'s' if errors != 1 else ''}"
        elif any(o.passed for o in outcomes):
            passed = sorted({o.version for o in outcomes if o.passed})
            why = f"it passed only version{'s' if len(passed) > 1 else ''} {', '.join(map(str, passed))}"
        else:
            why = "it was never validated against it"
        raise ContractNotPassed(
            f"data set {target.uri} has not passed contract {registered.ref} ({why}); validate it first, e.g. "
            f"lockgate data validate PATH --contract {registered.ref} --dataset {target.name}"
        )

    def versions(self, name: str) -> list[tuple[DatasetVersion, list[ContractOutcome]]]:
        """A data set's versions, newest first, each with the contract outcomes recorded on it."""
        found = self._datasets.versions(name)
        if not found:
            raise NotFoundError(f"no data set named '{name}' was logged; see: lockgate data contract list")
        return [(v, self.outcomes(v)) for v in found]

    def _dataset(self, dataset: str | DatasetVersion) -> DatasetVersion:
        if isinstance(dataset, DatasetVersion):
            return dataset
        return self._datasets.get(_dataset_ref(dataset))


def _dataset_ref(ref: str) -> str:
    """``transactions@latest``, ``transactions@3fa2…`` or ``datasets:/…`` as a datasets:/ reference."""
    return ref if ref.startswith("datasets:/") else f"datasets:/{ref}"


def _outcome(version: DatasetVersion, value: dict[str, Any], at: int, by: str) -> ContractOutcome:
    return ContractOutcome(
        dataset=version.uri,
        contract=str(value.get("name")),
        version=int(value.get("version") or 0),
        passed=bool(value.get("passed")),
        errors=int(value.get("errors") or 0),
        warnings=int(value.get("warnings") or 0),
        rows=int(value.get("rows") or 0),
        recorded_at=at,
        recorded_by=by,
    )

"""The contract registry: numbered versions of each contract, refused when they break the
compatibility mode or a registered consumer, every write audited.

>>> import lockgate as lg, tempfile
>>> from lockgate.data import Contract
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> v1 = Contract.from_dict({"name": "tx", "columns": {"f": {"type": "int64", "nullable": False}}})
>>> ws.data.contracts.register(v1).version
1
>>> ws.data.contracts.register(v1).version  # the same document again: nothing new
1
>>> v2 = Contract.from_dict({"name": "tx", "columns": {"f": {"type": "int64", "nullable": False}, "g": {"type": "string"}}})
>>> ws.data.contracts.register(v2).version
2
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.engine import Connection

from lockgate.audit import AuditLog
from lockgate.clock import now_millis, to_iso
from lockgate.data._compat import Consumer, IncompatibleContract, Violation, check_compatibility, parse_mode
from lockgate.data._contract import Compatibility, Contract
from lockgate.entities import NodeKind
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.hashing import sha256_json
from lockgate.store import ContractRepository, Database, LineageRepository, ModelRepository

__all__ = [
    "CONTRACT_FACT",
    "ConsumerProvider",
    "ContractRegistry",
    "ModelConsumers",
    "RegisteredContract",
    "contract_hash",
    "parse_contract_ref",
]

# The key of the fact a data set version carries for each contract it was validated against.
CONTRACT_FACT = "contract"
# How far downstream of a validated data set a consumer is looked for (data → run → model is 2;
# a pipeline adds a step run or two per hop).
_LINEAGE_DEPTH = 25


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredContract:
    """One registered version of a contract, with who registered it and under which mode."""

    name: str
    version: int
    owner: str
    compatibility: Compatibility
    content_hash: str
    created_at: int
    created_by: str
    contract: Contract

    @property
    def ref(self) -> str:
        """``name@version``, as the CLI and ``ws.data.validate`` accept it."""
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "owner": self.owner,
            "compatibility": self.compatibility.value,
            "content_hash": self.content_hash,
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
            "contract": self.contract.to_dict(),
        }


@runtime_checkable
class ConsumerProvider(Protocol):
    """Finds what reads a contract's columns; the registry refuses a version that drops or
    retypes one of them. Model versions are built in (:class:`ModelConsumers`); the feature
    store adds its feature views through ``ContractRegistry.add_consumer_provider``."""

    def consumers_of(self, contract: str) -> Sequence[Consumer]:
        """Everything registered that reads columns of the contract called ``contract``."""


def contract_hash(contract: Contract) -> str:
    """The canonical hash of a contract's content: its version number does not count."""
    data = contract.to_dict()
    data.pop("version", None)
    return sha256_json(data)


def parse_contract_ref(ref: str) -> tuple[str, int | None]:
    """``name``, ``name@latest`` or ``name@3`` → ``(name, version or None for the latest)``.

    >>> parse_contract_ref("transactions@3")
    ('transactions', 3)
    """
    name, sep, version = ref.strip().partition("@")
    if not name or (sep and not version):
        raise InvalidInputError(f"{ref!r} is not a contract reference; use NAME, NAME@latest or NAME@VERSION")
    if not sep or version == "latest":
        return name, None
    if not version.isdigit() or int(version) < 1:
        raise InvalidInputError(
            f"{ref!r} names no contract version; use NAME@latest or NAME@N with N a version number from 1"
        )
    return name, int(version)


class ContractRegistry:
    """``ws.data.contracts``: register, check, find and list contract versions.

    Registration follows Confluent's Schema Registry: a new version is checked against the
    registered ones under the subject's compatibility mode, which is the mode the new version
    declares (``compatibility:``) or, when it declares none, the mode of the latest registered
    version. Every violation is listed; nothing is written unless all pass.
    """

    def __init__(
        self, db: Database, audit: AuditLog, *, actor: str, consumer_providers: Iterable[ConsumerProvider] = ()
    ) -> None:
        self._db = db
        self._audit = audit
        self._actor = actor
        self._repo = ContractRepository()
        self._providers: builtins.list[ConsumerProvider] = list(consumer_providers)

    def add_consumer_provider(self, provider: ConsumerProvider) -> None:
        """Also protect the columns ``provider``'s consumers read (the feature store plugs in here)."""
        self._providers.append(provider)

    # -- registering -------------------------------------------------------------------------

    def register(self, contract: Contract | str | Path) -> RegisteredContract:
        """Register ``contract`` as the next version of its name, or return the version it already is.

        Raises :class:`~lockgate.data.IncompatibleContract` (listing every violation) when it
        breaks the compatibility mode or drops or retypes a column a consumer reads, and
        :class:`~lockgate.errors.ConflictError` when it declares a version that is not the next.
        """
        contract = _as_contract(contract)
        # Consumers are gathered before the write transaction: providers read on their own.
        consumers = self.consumers(contract.name)
        with self._db.write() as conn:
            registered = self._registered(conn, contract.name)
            latest = registered[-1] if registered else None
            effective, mode = self._effective(contract, latest)
            digest = contract_hash(effective)
            following = (latest.version if latest else 0) + 1
            wanted = contract.version
            if wanted is not None and wanted < following:
                existing = next(r for r in registered if r.version == wanted)  # numbered 1… without gaps
                if existing.content_hash == digest:
                    return existing
                raise ConflictError(
                    f"contract '{contract.name}' version {wanted} is already registered with other content; "
                    f"the next version is {following}: set version: {following} or leave version out"
                )
            if wanted is None and latest is not None and latest.content_hash == digest:
                return latest
            if wanted is not None and wanted != following:
                raise ConflictError(
                    f"contract '{contract.name}' cannot be registered as version {wanted}: the next version is "
                    f"{following}; set version: {following} or leave version out"
                )
            violations = check_compatibility(effective, [r.contract for r in registered], mode, consumers=consumers)
            if violations:
                raise _refusal(contract.name, following, mode, violations)
            stored = effective.model_copy(update={"version": following})
            now = now_millis()
            assert effective.owner is not None  # _effective always settles an owner
            inserted = self._repo.insert(
                conn,
                name=contract.name,
                version=following,
                owner=effective.owner,
                compatibility=mode.value,
                contract=stored.to_dict(),
                content_hash=digest,
                created_at=now,
                created_by=self._actor,
            )
            if not inserted:
                raise ConflictError(
                    f"contract '{contract.name}' version {following} was registered by someone else meanwhile; "
                    "look at it (lockgate data contract show) and register again"
                )
            details: dict[str, Any] = {"owner": effective.owner, "compatibility": mode.value, "content_hash": digest}
            if latest is not None and latest.compatibility != mode:
                details["compatibility_from"] = latest.compatibility.value
            if latest is not None and latest.owner != effective.owner:
                details["owner_from"] = latest.owner
            self._audit.record(
                conn,
                actor=self._actor,
                action="contract.registered",
                object_kind="contract",
                object_id=f"{contract.name}/{following}",
                details=details,
            )
        return RegisteredContract(
            name=contract.name,
            version=following,
            owner=effective.owner,
            compatibility=mode,
            content_hash=digest,
            created_at=now,
            created_by=self._actor,
            contract=stored,
        )

    def check(self, contract: Contract | str | Path, mode: str | Compatibility | None = None) -> list[Violation]:
        """Every reason ``contract`` could not be registered now; ``mode`` overrides the governing mode.

        The same rules as :meth:`register` (consumers included), without writing anything.
        """
        contract = _as_contract(contract)
        consumers = self.consumers(contract.name)
        with self._db.read() as conn:
            registered = self._registered(conn, contract.name)
        effective, governing = self._effective(contract, registered[-1] if registered else None)
        chosen = governing if mode is None else parse_mode(mode)
        return check_compatibility(effective, [r.contract for r in registered], chosen, consumers=consumers)

    def governing_mode(self, contract: Contract) -> Compatibility:
        """The mode :meth:`register` would check ``contract`` under."""
        with self._db.read() as conn:
            latest = self._repo.get(conn, contract.name)
        return self._effective(contract, _record(latest) if latest else None)[1]

    def _effective(self, contract: Contract, latest: RegisteredContract | None) -> tuple[Contract, Compatibility]:
        """The contract as it would be stored: a mode or owner it leaves out is the latest version's.

        A contract that does not say ``compatibility:`` keeps the subject's mode rather than
        silently falling back to the default (Confluent: the mode is the subject's setting).
        """
        declared = "compatibility" in contract.model_fields_set
        mode = contract.compatibility if declared or latest is None else latest.compatibility
        owner = contract.owner or (latest.owner if latest else self._actor)
        return contract.model_copy(update={"compatibility": mode, "owner": owner, "version": None}), mode

    # -- finding -----------------------------------------------------------------------------

    def get(self, name: str, version: int | str | None = None) -> RegisteredContract:
        """A registered version: ``get("tx")`` / ``get("tx", "latest")`` the latest, ``get("tx", 2)`` or ``get("tx@2")``."""
        if version is None:
            name, version = parse_contract_ref(name)
        elif isinstance(version, str):
            _, version = parse_contract_ref(f"{name}@{version}")
        with self._db.read() as conn:
            row = self._repo.get(conn, name, version)
            latest = self._repo.get(conn, name) if row is None and version is not None else None
        if row is None:
            if version is None or latest is None:
                raise NotFoundError(
                    f"no contract named '{name}' is registered; see: lockgate data contract list, "
                    "or register it: lockgate data contract register FILE"
                )
            raise NotFoundError(
                f"contract '{name}' has no version {version} (latest is {latest['version']}); "
                f"see: lockgate data contract show {name}"
            )
        return _record(row)

    def versions(self, name: str) -> builtins.list[RegisteredContract]:
        """All versions of ``name``, newest first."""
        with self._db.read() as conn:
            found = self._registered(conn, name)
        if not found:
            raise NotFoundError(f"no contract named '{name}' is registered; see: lockgate data contract list")
        return found[::-1]

    def list(self) -> builtins.list[tuple[RegisteredContract, int]]:
        """The latest version of every registered contract and how many versions it has, by name."""
        with self._db.read() as conn:
            return [(_record(row), int(row["versions"])) for row in self._repo.list(conn)]

    def find(self, contract: Contract) -> RegisteredContract | None:
        """The registered version whose content is exactly ``contract`` (as :meth:`register` would store it)."""
        with self._db.read() as conn:
            registered = self._registered(conn, contract.name)
        if not registered:
            return None
        digest = contract_hash(self._effective(contract, registered[-1])[0])
        matches = [r for r in registered if r.content_hash == digest]
        if contract.version is not None:
            matches = [r for r in matches if r.version == contract.version]
        return matches[-1] if matches else None

    def consumers(self, name: str) -> builtins.list[Consumer]:
        """Everything registered that reads columns of contract ``name`` (models, later feature views)."""
        found: builtins.list[Consumer] = []
        for provider in self._providers:
            found.extend(provider.consumers_of(name))
        return found

    def _registered(self, conn: Connection, name: str) -> builtins.list[RegisteredContract]:
        return [_record(row) for row in self._repo.versions(conn, name)]


class ModelConsumers:
    """Model versions that consume a contract: those downstream, in lineage, of a data set
    version that passed it, reading the columns of their input signature.

    The link is what lockgate recorded, not a naming convention: a data set version carries
    the contract version it passed (``ws.data.record``), a run logs it as an input, and the
    model version that run produced follows in lineage. A model registered without an
    ``input_example`` has no input columns to protect.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._contracts = ContractRepository()
        self._lineage = LineageRepository()
        self._models = ModelRepository()

    def consumers_of(self, contract: str) -> list[Consumer]:
        with self._db.read() as conn:
            sources: dict[int, set[tuple[str, str]]] = {}
            for fact in self._contracts.dataset_facts(conn, CONTRACT_FACT):
                value = fact["value"]
                if isinstance(value, dict) and value.get("name") == contract and value.get("passed") is True:
                    node = (NodeKind.DATASET.value, f"{fact['name']}@{fact['content_hash']}")
                    sources.setdefault(int(value["version"]), set()).add(node)
            # A model reached from data that passed several versions is judged by the newest.
            judged_by: dict[str, int] = {}
            for version in sorted(sources):
                for kind, node_id in self._downstream(conn, sources[version]):
                    if kind == NodeKind.MODEL_VERSION.value:
                        judged_by[node_id] = version
            found = []
            for node_id, version in sorted(judged_by.items()):
                name, _, number = node_id.rpartition("/")
                model = self._models.versions(conn, name, int(number)) if number.isdigit() else []
                if not model:
                    continue  # deleted since: it consumes nothing any more
                columns = tuple(str(i["name"]) for i in model[0].signature.get("inputs", []))
                found.append(
                    Consumer(kind="model", name=f"{name} v{number}", contract_version=version, columns=columns)
                )
            return found

    def _downstream(self, conn: Connection, start: set[tuple[str, str]]) -> set[tuple[str, str]]:
        seen = set(start)
        frontier = sorted(start)
        for _ in range(_LINEAGE_DEPTH):
            edges = self._lineage.neighbours(conn, frontier, upstream=False)
            frontier = [n for n in dict.fromkeys((e.dst_kind, e.dst_id) for e in edges) if n not in seen]
            seen.update(frontier)
            if not frontier:
                break
        return seen


def _as_contract(contract: Contract | str | Path) -> Contract:
    if isinstance(contract, Contract):
        return contract
    if isinstance(contract, (str, Path)):
        return Contract.load(contract)
    raise InvalidInputError(
        f"cannot use a {type(contract).__name__} as a contract; pass a Contract or the path of a contract YAML file"
    )


def _record(row: dict[str, Any]) -> RegisteredContract:
    return RegisteredContract(
        name=row["name"],
        version=int(row["version"]),
        owner=row["owner"],
        compatibility=Compatibility(row["compatibility"]),
        content_hash=row["content_hash"],
        created_at=int(row["created_at"]),
        created_by=row["created_by"],
        contract=Contract.from_dict(row["contract"], source=f"registered contract {row['name']} v{row['version']}"),
    )


def _refusal(name: str, version: int, mode: Compatibility, violations: Sequence[Violation]) -> IncompatibleContract:
    count = f"{len(violations)} problem" + ("s" if len(violations) > 1 else "")
    listed = "; ".join(f"({i}) {v.message}" for i, v in enumerate(violations, 1))
    return IncompatibleContract(
        f"contract '{name}' cannot be registered as version {version} under {mode.value} compatibility, "
        f"{count}: {listed}",
        violations,
    )

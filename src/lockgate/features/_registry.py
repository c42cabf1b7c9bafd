"""The feature registry: definitions versioned by content hash, applied with a diff, refused
when they take a feature away from a model that reads it, every write audited.

>>> import lockgate as lg, tempfile
>>> from datetime import timedelta
>>> from lockgate.features import Entity, FeatureView, ParquetSource
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> card = Entity("card", join_keys=["card_id"])
>>> stats = FeatureView(name="card_stats", entities=[card], ttl=timedelta(days=1),
...     source=ParquetSource("stats/", event_time="ts"), features={"spend": "float64"})
>>> [(c.name, c.action) for c in ws.features.apply([stats]).changes]
[('card', 'added'), ('card_stats', 'added')]
>>> wider = FeatureView(name="card_stats", entities=[card], ttl=timedelta(days=2),
...     source=ParquetSource("stats/", event_time="ts"), features={"spend": "float64"})
>>> [str(f) for f in ws.features.apply([wider], dry_run=True).changed[0].fields]
["ttl: '1d' → '2d'"]
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from lockgate.audit import AuditLog
from lockgate.clock import now_millis, to_iso
from lockgate.entities import LineageEdge, ModelVersion, NodeKind
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.features._catalog import Catalog, OnDemandSpec
from lockgate.features._consumers import Binding, FeatureConsumer, binding, breaking, consumers_of_view
from lockgate.features._definitions import Entity, FeatureService, FeatureView
from lockgate.features._loader import load_definitions
from lockgate.features._plan import ApplyPlan, BrokenConsumer, PlannedChange, plan_changes, refusal
from lockgate.features._specs import KINDS, entity_from_spec, service_from_spec, view_from_spec
from lockgate.lineage import LineageService
from lockgate.refs import ModelRef, parse_model_ref
from lockgate.store import Database, FeatureRepository, ModelRepository

__all__ = ["FeatureRegistry", "RegisteredDefinition", "definition_node"]


def definition_node(name: str, version: str) -> str:
    """The lineage node id of one definition version; the node's kind is the definition's."""
    return f"{name}@{version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredDefinition:
    """One stored version of a definition: its spec, who applied it and when, and whether it is current."""

    kind: str
    name: str
    version: str
    spec: dict[str, Any]
    created_at: int
    created_by: str
    current: bool
    origin: str | None = None
    versions: int = 1

    @property
    def ref(self) -> str:
        """``features:/NAME`` (views and services) as the CLI prints it."""
        return f"features:/{self.name}"

    def definition(self) -> Entity | FeatureView | FeatureService | OnDemandSpec:
        """The definition rebuilt from its spec; an on-demand feature comes back without its function."""
        if self.kind == "entity":
            return entity_from_spec(self.spec)
        if self.kind == "feature_view":
            return view_from_spec(self.spec)
        if self.kind == "feature_service":
            return service_from_spec(self.spec)
        return OnDemandSpec.from_spec(self.spec, self.version)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "current": self.current,
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
            "origin": self.origin,
            "versions": self.versions,
            "spec": self.spec,
        }


class FeatureRegistry:
    """``ws.features.registry``: apply, find and bind feature definitions."""

    def __init__(self, db: Database, audit: AuditLog, lineage: LineageService, *, actor: str) -> None:
        self._db = db
        self._audit = audit
        self._lineage = lineage
        self._actor = actor
        self._repo = FeatureRepository()
        self._models = ModelRepository()

    # -- applying ----------------------------------------------------------------------------

    def apply(
        self,
        definitions: Catalog | Iterable[Any] | str | Path,
        *,
        dry_run: bool = False,
        origin: str | None = None,
    ) -> ApplyPlan:
        """Register the definitions that are new or changed, and say what changed.

        Raises :class:`~lockgate.errors.InvalidInputError` when a reference does not resolve
        against the registry with these definitions applied, and
        :class:`IncompatibleFeatureChange` (nothing written) when a change removes or retypes a
        feature that a registered model version reads; a dry run returns the plan instead.
        """
        applied, origin = _as_catalog(definitions, origin)
        with self._db.read() if dry_run else self._db.write() as conn:
            heads = {(r["kind"], r["name"]): r for r in self._repo.heads(conn)}
            current = _catalog(heads.values())
            proposed = current.overlay(applied)
            problems = proposed.problems()
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise InvalidInputError(
                    f"the definitions do not fit together: {problems[0]}{more}; fix and apply again"
                )
            changes = plan_changes(applied, heads)
            plan = ApplyPlan(
                changes=tuple(changes),
                violations=tuple(self._breaks(conn, current, proposed)),
                applied=False,
                origin=origin,
            )
            if dry_run:
                return plan
            if plan.violations:
                raise refusal(plan)
            now = now_millis()
            for change in changes:
                if change.action in ("added", "changed"):
                    self._write(conn, change, applied.table(change.kind)[change.name], origin, now)
        return ApplyPlan(changes=plan.changes, violations=(), applied=True, origin=origin)

    def _write(self, conn: Connection, change: PlannedChange, definition: Any, origin: str | None, now: int) -> None:
        self._repo.insert_definition(
            conn,
            kind=change.kind,
            name=change.name,
            version=change.version,
            spec=definition.spec(),
            created_at=now,
            created_by=self._actor,
        )
        self._repo.set_head(
            conn,
            kind=change.kind,
            name=change.name,
            version=change.version,
            origin=origin,
            updated_at=now,
            updated_by=self._actor,
        )
        details: dict[str, Any] = {"version": change.version, "from": change.previous, "origin": origin}
        if change.fields:
            details["fields"] = [f.field for f in change.fields]
        self._audit.record(
            conn,
            actor=self._actor,
            action=f"{change.kind}.applied",
            object_kind=change.kind,
            object_id=change.name,
            details=details,
        )

    def _breaks(self, conn: Connection, current: Catalog, proposed: Catalog) -> builtins.list[BrokenConsumer]:
        bindings = [binding(r) for r in self._repo.bindings(conn)]
        return breaking(bindings, self._repo.model_feature_refs(conn), current, proposed)

    # -- finding -----------------------------------------------------------------------------

    def current(self) -> Catalog:
        """The current version of every definition (on-demand features without their functions)."""
        with self._db.read() as conn:
            return _catalog(self._repo.heads(conn))

    def list(self, kind: str | None = None) -> builtins.list[RegisteredDefinition]:
        """The current version of every definition (of one kind), by kind and name."""
        if kind is not None:
            _check_kind(kind)
        with self._db.read() as conn:
            rows = self._repo.heads(conn, kind)
        rows.sort(key=lambda r: (KINDS.index(r["kind"]), r["name"]))
        return [_registered(r, current=True) for r in rows]

    def get(self, name: str, *, kind: str | None = None, version: str | None = None) -> RegisteredDefinition:
        """A definition by name (its current version unless ``version``, a hash or a prefix of one).

        Names are per kind; without ``kind`` the name must belong to one kind only.
        """
        with self._db.read() as conn:
            head = self._head(conn, name, kind)
            if version is None:
                return _registered(head, current=True)
            row = self._repo.definition(conn, head["kind"], name, version)
        if row is None:
            raise NotFoundError(
                f"{_label(head['kind'])} '{name}' has no single version {version!r} (current is "
                f"{head['version'][:12]}); see: lockgate features show {name}"
            )
        return _registered(
            {**row, "origin": None, "versions": head["versions"]}, current=row["version"] == head["version"]
        )

    def versions(self, name: str, *, kind: str | None = None) -> builtins.list[RegisteredDefinition]:
        """Every stored version of a definition, newest first."""
        with self._db.read() as conn:
            head = self._head(conn, name, kind)
            rows = self._repo.versions(conn, head["kind"], name)
        return [
            _registered(
                {**r, "origin": head["origin"] if r["version"] == head["version"] else None, "versions": len(rows)},
                current=r["version"] == head["version"],
            )
            for r in reversed(rows)
        ]

    def _head(self, conn: Connection, name: str, kind: str | None) -> dict[str, Any]:
        if kind is not None:
            _check_kind(kind)
        rows = [r for r in self._repo.heads(conn, kind) if r["name"] == name]
        if not rows:
            what = _label(kind) if kind else "feature definition"
            raise NotFoundError(
                f"no {what} named '{name}' is registered; see: lockgate features list, "
                "or apply it: lockgate features apply FILE"
            )
        if len(rows) > 1:
            kinds = ", ".join(r["kind"] for r in rows)
            raise InvalidInputError(f"'{name}' names several definitions ({kinds}); say which kind")
        return rows[0]

    def consumers(self, view: str) -> builtins.list[FeatureConsumer]:
        """The model versions that read features of ``view``: bound through a feature service
        (directly, or through an on-demand feature's inputs) or registered with references to it."""
        with self._db.read() as conn:
            head = self._repo.head(conn, "feature_view", view)
            if head is None:
                raise NotFoundError(f"no feature view named '{view}' is registered; see: lockgate features list")
            current = _catalog(self._repo.heads(conn))
            bindings = [binding(r) for r in self._repo.bindings(conn)]
            referenced = self._repo.model_feature_refs(conn)
        return consumers_of_view(view, bindings, referenced, current)

    # -- binding -----------------------------------------------------------------------------

    def bind(self, service: str | FeatureService, model_version: str | ModelVersion) -> Binding:
        """Record that ``model_version`` was trained with ``service`` (its current version), so
        no later apply may take its features away, and serving resolves its lookups through it.

        Binding again to the same service version changes nothing.
        """
        ref = (
            ModelRef(model_version.name, model_version.version)
            if isinstance(model_version, ModelVersion)
            else parse_model_ref(model_version)
        )
        with self._db.write() as conn:
            return self.bind_in(conn, service, ref)

    def bind_in(self, conn: Connection, service: str | FeatureService, model_version: ModelRef) -> Binding:
        """:meth:`bind` inside the caller's write transaction (the model registry binds a version
        in the transaction that registers it, so a version is never left half-registered)."""
        name = service.name if isinstance(service, FeatureService) else service
        head = self._repo.head(conn, "feature_service", name)
        if head is None:
            raise NotFoundError(
                f"no feature service named '{name}' is registered; apply it first: lockgate features apply FILE"
            )
        if isinstance(service, FeatureService) and service.version != head["version"]:
            raise ConflictError(
                f"feature service '{name}' differs from its registered version ({head['version'][:12]}); "
                "apply it first, then bind"
            )
        model, number = self._model_version(conn, model_version)
        features = _catalog(self._repo.heads(conn)).resolve(service_from_spec(head["spec"]).features)
        now = now_millis()
        values = {
            "service": name,
            "model_name": model,
            "model_version": number,
            "service_version": head["version"],
            "features": [f.to_dict() for f in features],
            "created_at": now,
            "created_by": self._actor,
        }
        if not self._repo.bind(conn, **values):
            existing = binding(self._repo.bindings(conn, service=name, model=(model, number))[0])
            if existing.service_version != head["version"]:
                raise ConflictError(
                    f"models:/{model}/{number} is already bound to feature service '{name}' version "
                    f"{existing.service_version[:12]}, not the current {head['version'][:12]}; "
                    "a model version keeps the features it was trained with"
                )
            return existing
        self._lineage.record(
            conn,
            [
                LineageEdge(
                    src_kind=NodeKind.FEATURE_SERVICE,
                    src_id=definition_node(name, head["version"]),
                    relation="features",
                    dst_kind=NodeKind.MODEL_VERSION,
                    dst_id=f"{model}/{number}",
                )
            ],
        )
        self._audit.record(
            conn,
            actor=self._actor,
            action="feature_service.bound",
            object_kind="feature_service",
            object_id=name,
            details={"model": f"{model}/{number}", "version": head["version"]},
        )
        return binding(values)

    def bindings(
        self, *, service: str | None = None, model: str | ModelVersion | None = None
    ) -> builtins.list[Binding]:
        """Bindings of one service, of one model version (``models:/fraud/3``), or all."""
        with self._db.read() as conn:
            key = None
            if model is not None:
                ref = ModelRef(model.name, model.version) if isinstance(model, ModelVersion) else parse_model_ref(model)
                key = self._model_version(conn, ref)
            return [binding(r) for r in self._repo.bindings(conn, service=service, model=key)]

    def service_of(self, model: str | ModelVersion) -> Binding | None:
        """The binding through which a model version reads its features (``models:/fraud/3``,
        ``models:/fraud@champion``): the feature service serving looks its entities up with.
        None when the version is bound to no service.

        >>> import lockgate as lg, tempfile
        >>> from sklearn.dummy import DummyClassifier
        >>> ws = lg.Workspace.open(tempfile.mkdtemp())
        >>> _ = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="tiny")
        >>> ws.features.registry.service_of("models:/tiny/1") is None
        True

        Raises :class:`~lockgate.errors.ConflictError` when the version was bound to several
        services (with :meth:`bind`), since serving could not tell which one to use.
        """
        found = self.bindings(model=model)
        if len(found) > 1:
            names = ", ".join(b.service for b in found)
            raise ConflictError(
                f"{found[0].model_ref} is bound to several feature services ({names}); "
                "name the one to serve with (a deployment's feature_service)"
            )
        return found[0] if found else None

    def _model_version(self, conn: Connection, ref: ModelRef) -> tuple[str, int]:
        version = ref.version
        if ref.alias == "latest":
            version = self._models.latest_version(conn, ref.name) or None
        elif ref.alias is not None:
            version = self._models.aliases(conn, ref.name).get((ref.name, ref.alias))
        if version is None or not self._models.versions(conn, ref.name, version):
            raise NotFoundError(f"model version {ref} does not exist; see: lockgate models show {ref.name}")
        return ref.name, int(version)


# -- helpers -------------------------------------------------------------------------------------


def _as_catalog(definitions: Catalog | Iterable[Any] | str | Path, origin: str | None) -> tuple[Catalog, str | None]:
    if isinstance(definitions, (str, Path)):
        return load_definitions(definitions), origin or str(Path(definitions).resolve())
    if isinstance(definitions, Catalog):
        return definitions, origin
    if isinstance(definitions, Iterable):
        return Catalog.of(definitions), origin
    raise InvalidInputError(
        f"cannot apply a {type(definitions).__name__}; pass definitions, a list of them, or a definitions file path"
    )


def _catalog(rows: Iterable[dict[str, Any]]) -> Catalog:
    catalog = Catalog()
    for row in rows:
        catalog.table(row["kind"])[row["name"]] = _registered(row, current=True).definition()
    return catalog


def _registered(row: dict[str, Any], *, current: bool) -> RegisteredDefinition:
    return RegisteredDefinition(
        kind=row["kind"],
        name=row["name"],
        version=row["version"],
        spec=row["spec"],
        created_at=int(row["created_at"]),
        created_by=row["created_by"],
        current=current,
        origin=row.get("origin"),
        versions=int(row.get("versions") or 1),
    )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInputError(f"definition kind {kind!r} is unknown; use one of: {', '.join(KINDS)}")


def _label(kind: str) -> str:
    return kind.replace("_", " ")

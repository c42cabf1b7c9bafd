"""The model registry: numbered versions, aliases that move through one audited path, and
loading that proves the bytes are the ones registered.

A version is bound to the feature service it was trained through in the transaction that
registers it (see :meth:`ModelRegistry.register`), so serving can always ask the feature store
which service a version reads: ``ws.features.service_of("models:/fraud/3")``.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from sqlalchemy.engine import Connection

from lockgate.artifacts import ArtifactStore
from lockgate.audit import AuditLog
from lockgate.clock import now_millis
from lockgate.entities import LineageEdge, ModelVersion, NodeKind
from lockgate.errors import ConflictError, InvalidInputError, LockgateError, NotFoundError, UserCodeError
from lockgate.features import FeatureRegistry
from lockgate.lineage import LineageService, Node
from lockgate.refs import ModelRef, is_valid_alias, is_valid_name, parse_model_ref
from lockgate.registry._flavors import deserialize, flavor_of, serialize
from lockgate.registry._signature import example_table, infer_signature
from lockgate.registry.hooks import AliasHook, AliasMove
from lockgate.store import Database, ModelRepository, RunRepository
from lockgate.store.runs import MODEL_ATTACHMENT_RELATIONS
from lockgate.tracking import ActiveRun

__all__ = ["ModelRegistry"]

# Matched with fullmatch: "$" would let a trailing newline into a name or an alias.


class ModelRegistry:
    """``ws.models``: register, find, alias, load and delete model versions."""

    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        audit: AuditLog,
        lineage: LineageService,
        *,
        actor: str,
        hooks: Sequence[AliasHook] = (),
    ) -> None:
        self._db = db
        self._artifacts = artifacts
        self._audit = audit
        self._lineage = lineage
        self._actor = actor
        self._repo = ModelRepository()
        self._runs = RunRepository()
        self._hooks: builtins.list[AliasHook] = list(hooks)
        # Bindings are the feature registry's records; registering binds through it.
        self._features = FeatureRegistry(db, audit, lineage, actor=actor)

    def add_alias_hook(self, hook: AliasHook) -> None:
        """Call ``hook`` before every alias move (promotion gates plug in here)."""
        self._hooks.append(hook)

    # -- registering -------------------------------------------------------------------------

    def log_from_run(
        self,
        run: ActiveRun,
        model: Any,
        *,
        name: str,
        input_example: Any | None,
        features: Sequence[str] | None,
        description: str | None,
    ) -> ModelVersion:
        return self.register(
            model, name=name, run_id=run.id, input_example=input_example, features=features, description=description
        )

    def register(
        self,
        model: Any,
        *,
        name: str,
        run_id: str | None = None,
        input_example: Any | None = None,
        features: Sequence[str] | None = None,
        description: str | None = None,
        feature_service: str | None = None,
    ) -> ModelVersion:
        """Store ``model`` and register it as the next version of ``name``.

        The version is bound to a feature service in the same transaction (``lockgate features
        show SERVICE`` lists it; serving finds the service with
        :meth:`FeatureStore.service_of <lockgate.features.FeatureStore.service_of>`):
        ``feature_service`` names it; by default it is the service the training data came
        through, found upstream of ``run_id`` in lineage (a training set built with
        ``ws.features.training_set(..., run_id=...)``, or logged to the run with
        ``run.log_dataset``). A run whose lineage reaches several services must name one.
        """
        _check_name(name)
        if feature_service is None and run_id is not None:
            feature_service = self._service_trained_through(run_id)
        signature = infer_signature(model, input_example)
        stored = self._artifacts.put_bytes(serialize(model))
        # Kept so serving can check a converted model against the one registered.
        example = None if input_example is None else self._artifacts.put_bytes(_ipc_bytes(example_table(input_example)))
        flavor = flavor_of(model)
        now = now_millis()
        with self._db.write() as conn:
            if run_id is not None and self._runs.resolve_id(conn, run_id) != [run_id]:
                raise NotFoundError(
                    f"run '{run_id}' does not exist, so no model can be registered from it; see: lockgate runs list --all"
                )
            self._repo.ensure_model(conn, name, actor=self._actor, now=now)
            self._repo.lock_model(conn, name)
            version = self._repo.next_version(conn, name)
            self._runs.record_artifact(conn, stored.sha256, stored.size, now)
            if example is not None:
                self._runs.record_artifact(conn, example.sha256, example.size, now)
            self._repo.insert_version(
                conn,
                name=name,
                version=version,
                run_id=run_id,
                artifact_sha256=stored.sha256,
                flavor=flavor,
                signature=signature,
                features=list(features or []),
                description=description,
                created_at=now,
                created_by=self._actor,
            )
            node = f"{name}/{version}"
            edges = [
                LineageEdge(
                    src_kind=NodeKind.ARTIFACT,
                    src_id=stored.sha256,
                    relation="artifact",
                    dst_kind=NodeKind.MODEL_VERSION,
                    dst_id=node,
                )
            ]
            if example is not None:
                edges.append(
                    LineageEdge(
                        src_kind=NodeKind.ARTIFACT,
                        src_id=example.sha256,
                        relation="input_example",
                        dst_kind=NodeKind.MODEL_VERSION,
                        dst_id=node,
                    )
                )
            if run_id:
                edges.append(
                    LineageEdge(
                        src_kind=NodeKind.RUN,
                        src_id=run_id,
                        relation="produced",
                        dst_kind=NodeKind.MODEL_VERSION,
                        dst_id=node,
                    )
                )
            self._lineage.record(conn, edges)
            self._audit.record(
                conn,
                actor=self._actor,
                action="model_version.registered",
                object_kind="model_version",
                object_id=node,
                details={"run": run_id, "sha256": stored.sha256, "flavor": flavor},
            )
            if feature_service is not None:
                self._features.bind_in(conn, feature_service, ModelRef(name, version))
        return self.get(f"models:/{name}/{version}")

    def _service_trained_through(self, run_id: str) -> str | None:
        """The one feature service upstream of ``run_id`` in lineage, or None when there is none."""
        graph = self._lineage.walk(Node(NodeKind.RUN, run_id), direction="upstream")
        names = sorted({n.id.rpartition("@")[0] for n in graph.nodes if n.kind == NodeKind.FEATURE_SERVICE})
        if len(names) > 1:
            raise InvalidInputError(
                f"the training data of run '{run_id[:8]}' came through several feature services "
                f"({', '.join(names)}); name the one serving uses: "
                "ws.models.register(model, name=..., run_id=..., feature_service='NAME')"
            )
        return names[0] if names else None

    # -- finding -----------------------------------------------------------------------------

    def list(self) -> builtins.list[dict[str, Any]]:
        """Every registered model with its latest version and aliases."""
        with self._db.read() as conn:
            return self._repo.list_models(conn)

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """All versions of ``name``, newest first."""
        with self._db.read() as conn:
            if not self._repo.model_exists(conn, name):
                raise NotFoundError(f"model '{name}' does not exist; see: lockgate models list")
            return self._repo.versions(conn, name)

    def get(self, ref: str | ModelRef) -> ModelVersion:
        """The version behind ``models:/name/3``, ``models:/name@alias`` or ``models:/name@latest``."""
        parsed = ref if isinstance(ref, ModelRef) else parse_model_ref(ref)
        with self._db.read() as conn:
            return self._resolve(conn, parsed)

    def _resolve(self, conn: Connection, ref: ModelRef) -> ModelVersion:
        if not self._repo.model_exists(conn, ref.name):
            raise NotFoundError(f"model '{ref.name}' does not exist; see: lockgate models list")
        version = ref.version
        if ref.alias == "latest":  # reserved: no alias may be called that, so it always means this
            version = self._repo.latest_version(conn, ref.name)
            if not version:
                raise NotFoundError(f"model '{ref.name}' has no versions; register one first")
        elif ref.alias is not None:
            aliases = self._repo.aliases(conn, ref.name)
            version = aliases.get((ref.name, ref.alias))
            if version is None:
                known = ", ".join(sorted(a for (_, a) in aliases)) or "none"
                raise NotFoundError(
                    f"model '{ref.name}' has no alias '{ref.alias}' (aliases: {known}; "
                    f"{self._latest_text(conn, ref.name)}); see: lockgate models show {ref.name}"
                )
        found = self._repo.versions(conn, ref.name, version)
        if not found:
            raise NotFoundError(
                f"model '{ref.name}' has no version {version} ({self._latest_text(conn, ref.name)}); "
                f"see: lockgate models show {ref.name}"
            )
        return found[0]

    def _latest_text(self, conn: Connection, name: str) -> str:
        latest = self._repo.latest_version(conn, name)
        return f"latest is {latest}" if latest else "it has no versions"

    def load(self, ref: str | ModelRef) -> Any:
        """The model object; its bytes are hash-verified before they are deserialized.

        >>> import lockgate as lg, tempfile
        >>> from sklearn.dummy import DummyClassifier
        >>> ws = lg.Workspace.open(tempfile.mkdtemp())
        >>> mv = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="tiny")
        >>> ws.models.load("models:/tiny/1").predict([[0]]).shape
        (1,)
        """
        version = self.get(ref)
        data = self._artifacts.get_bytes(version.artifact_sha256)
        return deserialize(data, version.flavor)

    def input_example(self, ref: str | ModelRef) -> pa.Table | None:
        """The input example the version was registered with (hash-verified), or None.

        >>> import lockgate as lg, tempfile
        >>> from sklearn.dummy import DummyClassifier
        >>> ws = lg.Workspace.open(tempfile.mkdtemp())
        >>> _ = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="tiny", input_example={"f0": [0]})
        >>> ws.models.input_example("models:/tiny/1").column_names
        ['f0']
        """
        found = self.attachments(ref, "input_example")
        if not found:
            return None
        with pa.ipc.open_stream(self._artifacts.get_bytes(found[-1])) as reader:
            return reader.read_all()

    def attachments(self, ref: str | ModelRef, relation: str) -> builtins.list[str]:
        """Digests of the objects attached to a version under ``relation``, oldest first."""
        version = self.get(ref)
        root = Node(NodeKind.MODEL_VERSION, version.node_id)
        upstream = relation == "input_example"
        graph = self._lineage.walk(root, direction="upstream" if upstream else "downstream", depth=1)
        if upstream:
            return [e.src_id for e in graph.edges if e.relation == relation and e.src_kind == NodeKind.ARTIFACT]
        return [e.dst_id for e in graph.edges if e.relation == relation and e.dst_kind == NodeKind.ARTIFACT]

    def attach(self, ref: str | ModelRef, data: bytes, *, relation: str, details: dict[str, Any]) -> str:
        """Store ``data`` as derived from a version (an ONNX conversion, its check report) and
        record the lineage edge and an audit event in one transaction; returns the digest."""
        if relation not in MODEL_ATTACHMENT_RELATIONS or relation == "input_example":
            raise InvalidInputError(f"cannot attach under relation {relation!r}; use one of 'onnx', 'onnx_check'")
        version = self.get(ref)
        stored = self._artifacts.put_bytes(data)
        with self._db.write() as conn:
            self._resolve(conn, ModelRef(version.name, version.version))  # still there
            self._runs.record_artifact(conn, stored.sha256, stored.size, now_millis())
            edge = LineageEdge(
                src_kind=NodeKind.MODEL_VERSION,
                src_id=version.node_id,
                relation=relation,
                dst_kind=NodeKind.ARTIFACT,
                dst_id=stored.sha256,
            )
            self._lineage.record(conn, [edge])
            self._audit.record(
                conn,
                actor=self._actor,
                action=f"model_version.{relation}_attached",
                object_kind="model_version",
                object_id=version.node_id,
                details={"sha256": stored.sha256, **details},
            )
        return stored.sha256

    # -- aliases -----------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``name@alias`` at ``version``: the one path every alias move takes."""
        return self._move_alias(name, alias, version)

    def delete_alias(self, name: str, alias: str) -> None:
        self._move_alias(name, alias, None)

    def _move_alias(self, name: str, alias: str, version: int | None) -> ModelVersion:
        if not is_valid_alias(alias) or alias == "latest":
            raise InvalidInputError(
                f"alias {alias!r} is not valid; start with a letter, use letters, digits, '-' or '_'"
            )
        # Hooks (promotion gates: user code that may read the workspace or log runs itself) run
        # before the write transaction, so they never hold the database's write lock.
        with self._db.read() as conn:
            current = self._repo.aliases(conn, name).get((name, alias))
            target = self._alias_target(conn, name, alias, version, current)
        move = AliasMove(name=name, alias=alias, from_version=current, to_version=version, actor=self._actor)
        for hook in self._hooks:
            _call_hook(hook, move)
        with self._db.write() as conn:
            now_current = self._repo.aliases(conn, name).get((name, alias))
            if now_current != current:
                raise ConflictError(
                    f"{name}@{alias} moved to version {now_current} while this move was being checked; "
                    "look at it again and retry"
                )
            target = self._alias_target(conn, name, alias, version, current)
            if version is None:
                self._repo.delete_alias(conn, name, alias)
            else:
                self._repo.set_alias(conn, name, alias, version, actor=self._actor, now=now_millis())
            self._audit.record(
                conn,
                actor=self._actor,
                action="alias.moved" if version is not None else "alias.deleted",
                object_kind="model",
                object_id=name,
                details={"alias": alias, "from": current, "to": version},
            )
        return target

    def _alias_target(
        self, conn: Connection, name: str, alias: str, version: int | None, current: int | None
    ) -> ModelVersion:
        if version is not None:
            return self._resolve(conn, ModelRef(name, version))
        if current is None:
            raise NotFoundError(f"model '{name}' has no alias '{alias}'; see: lockgate models show {name}")
        return self._resolve(conn, ModelRef(name, current))

    # -- deleting ----------------------------------------------------------------------------

    def delete(self, name: str, version: int | None = None) -> None:
        """Delete one version (and aliases pointing at it) or, without ``version``, the whole model."""
        with self._db.write() as conn:
            if version is None:
                if not self._repo.model_exists(conn, name):
                    raise NotFoundError(f"model '{name}' does not exist; see: lockgate models list")
                self._repo.delete_model(conn, name)
                self._audit.record(conn, actor=self._actor, action="model.deleted", object_kind="model", object_id=name)
            else:
                self._resolve(conn, ModelRef(name, version))
                self._repo.delete_version(conn, name, version)
                self._audit.record(
                    conn,
                    actor=self._actor,
                    action="model_version.deleted",
                    object_kind="model_version",
                    object_id=f"{name}/{version}",
                )


def _call_hook(hook: AliasHook, move: AliasMove) -> None:
    """Run one hook inside the error boundary: a LockgateError (a gate saying no) passes
    through as it is; anything else is the hook's own failure and is named as such."""
    try:
        hook.before_alias_move(move)
    except LockgateError:
        raise
    except Exception as exc:
        where = f"{move.name}@{move.alias}"
        raise UserCodeError(
            f"alias hook {type(hook).__name__} failed while checking the move of {where} to "
            f"{'nothing' if move.to_version is None else f'version {move.to_version}'} "
            f"({type(exc).__name__}: {exc}); the alias was not changed: fix the hook and retry"
        ) from exc


def _ipc_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise InvalidInputError(
            f"model name {name!r} is not valid; start with a letter or digit, use letters, digits, '.', '-' or '_'"
        )

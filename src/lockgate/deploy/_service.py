"""``ws.deployments``: create, change and delete deployments, and resolve them to model versions.

A deployment that follows an alias changes what it serves without being written to: when
``fraud@champion`` moves, the record stays as it is and its resolution changes. A server
sees both kinds of change with two cheap reads per poll (see :meth:`DeploymentService.poll`):

1. ``changes_since(revision)``: records written after the revision it last saw (one query on
   the indexed, table-wide ``revision``; deletions come back as tombstones);
2. ``resolve_many(held)``: the deployments it holds resolved again against the registry
   (two queries on the model tables' primary keys, however many deployments), compared
   with what it loaded by :attr:`ResolvedDeployment.versions`.

Alias moves are read from the registry's own alias table rather than copied into
deployments: a copy would need every alias move (a registry write, behind promotion hooks)
to know about deployments, and could drift from the alias it mirrors.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.engine import Connection

from lockgate.audit import AuditLog
from lockgate.clock import now_millis
from lockgate.deploy._spec import Deployment, ResolvedDeployment, ResolvedRoute, Route, ServingSettings
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.refs import is_valid_name
from lockgate.registry import ModelRegistry
from lockgate.store import Database, DeploymentRepository

__all__ = ["DeploymentPoll", "DeploymentService"]

_REPO = DeploymentRepository()

SettingsArg = ServingSettings | Mapping[str, Any] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeploymentPoll:
    """What :meth:`DeploymentService.poll` found: the revision to pass next time, the
    records written since, and the current resolution of every live deployment asked about."""

    revision: int
    changed: tuple[Deployment, ...]
    resolved: dict[str, ResolvedDeployment]


class DeploymentService:
    """``ws.deployments``: deployments as audited records in the metadata store.

    >>> import lockgate as lg, tempfile
    >>> from sklearn.dummy import DummyClassifier
    >>> ws = lg.Workspace.open(tempfile.mkdtemp())
    >>> for _ in range(2):
    ...     _ = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")
    >>> _ = ws.models.set_alias("fraud", "champion", 1)
    >>> d = ws.deployments.create("fraud-api", "models:/fraud@champion", settings={"max_batch_size": 64})
    >>> ws.deployments.resolve("fraud-api").versions
    ('models:/fraud/1',)
    >>> _ = ws.models.set_alias("fraud", "champion", 2)  # no deployment write, a new resolution
    >>> ws.deployments.resolve("fraud-api").versions, ws.deployments.get("fraud-api").revision
    (('models:/fraud/2',), 1)
    >>> ws.close()
    """

    def __init__(self, db: Database, audit: AuditLog, models: ModelRegistry, *, actor: str) -> None:
        self._db = db
        self._audit = audit
        self._models = models
        self._actor = actor

    # -- writing -------------------------------------------------------------------------------

    def create(self, name: str, model: str, *, settings: SettingsArg = None) -> Deployment:
        """Deploy ``model`` (``models:/NAME@ALIAS`` follows the alias, ``models:/NAME/N`` is
        pinned) as ``name``, with serving ``settings`` (defaults for what is not given)."""
        _check_name(name)
        route = self._route(model)
        spec_settings = ServingSettings().merged(_settings(settings))
        with self._db.write() as conn:
            _REPO.lock(conn)
            existing = _REPO.get(conn, name)
            if existing is not None and not existing["deleted"]:
                raise ConflictError(
                    f"deployment '{name}' already exists; change it with: lockgate deploy update {name} --model REF"
                )
            now = now_millis()
            record = Deployment(
                name=name,
                routes=(route,),
                settings=spec_settings,
                revision=_REPO.next_revision(conn),
                deleted=False,
                created_at=now,
                created_by=self._actor,
                updated_at=now,
                updated_by=self._actor,
            )
            values = record_values(record)
            if existing is None:
                _REPO.insert(conn, **values)
            else:  # a name deleted before: its tombstone comes back to life under a new revision
                _REPO.replace(conn, **values)
            self._record(
                conn,
                "deployment.created",
                record,
                {"revision": record.revision, **record.spec(), "resolved": self._now_serves(route)},
            )
        return record

    def update(self, name: str, *, model: str | None = None, settings: SettingsArg = None) -> Deployment:
        """Point the primary route at another ``model`` and/or change ``settings`` (a mapping
        changes only the keys it names). Nothing changes, nothing is written."""
        route = self._route(model) if model is not None else None
        changes = _settings(settings)
        with self._db.write() as conn:
            _REPO.lock(conn)
            current = require_live(conn, name)
            if route is not None and current.rollout is not None:
                raise ConflictError(
                    f"deployment '{name}' has a {current.rollout.strategy} of {current.rollout.candidate} running; "
                    f"promote or roll it back first: lockgate deploy promote|rollback {name}"
                )
            routes = tuple(route if r.role == "primary" else r for r in current.routes) if route else current.routes
            new_settings = current.settings.merged(changes)
            if routes == current.routes and new_settings == current.settings:
                return current
            record = replace(
                current,
                routes=routes,
                settings=new_settings,
                revision=_REPO.next_revision(conn),
                updated_at=now_millis(),
                updated_by=self._actor,
            )
            _REPO.replace(conn, **record_values(record))
            details: dict[str, Any] = {"revision": record.revision}
            if routes != current.routes:
                details["routes"] = {"from": [r.to_dict() for r in current.routes], "to": [r.to_dict() for r in routes]}
                details["resolved"] = self._now_serves(record.primary)
            old, new = current.settings.to_dict(), new_settings.to_dict()
            if old != new:
                details["settings"] = {k: {"from": old[k], "to": new[k]} for k in new if old[k] != new[k]}
            self._record(conn, "deployment.updated", record, details)
        return record

    def delete(self, name: str) -> None:
        """Stop deploying ``name``. The row stays as a tombstone at a new revision, so a
        polling server learns of it; the audit log keeps the history."""
        with self._db.write() as conn:
            _REPO.lock(conn)
            current = require_live(conn, name)
            record = replace(
                current,
                deleted=True,
                rollout=None,
                revision=_REPO.next_revision(conn),
                updated_at=now_millis(),
                updated_by=self._actor,
            )
            _REPO.replace(conn, **record_values(record))
            self._record(conn, "deployment.deleted", record, {"revision": record.revision})

    # -- reading -------------------------------------------------------------------------------

    def get(self, name: str) -> Deployment:
        with self._db.read() as conn:
            return require_live(conn, name)

    def list(self) -> builtins.list[Deployment]:
        """Live deployments, by name."""
        with self._db.read() as conn:
            return [Deployment.from_row(r) for r in _REPO.list(conn)]

    def revision(self) -> int:
        """The highest revision written so far (0 before any deployment): where a new server
        starts polling from after loading :meth:`list`."""
        with self._db.read() as conn:
            return _REPO.revision(conn)

    def changes_since(self, revision: int) -> builtins.list[Deployment]:
        """Deployments written after ``revision``, oldest first; deleted ones come back with
        ``deleted=True``. One indexed query: cheap enough to call every second."""
        with self._db.read() as conn:
            return [Deployment.from_row(r) for r in _REPO.changed_since(conn, revision)]

    def resolve(self, name: str) -> ResolvedDeployment:
        """The model versions ``name`` serves now; an alias is read again on every call.

        Raises NotFoundError when a route's model, version or alias no longer exists."""
        with self._db.read() as conn:
            deployment = require_live(conn, name)
            return _resolve(conn, [deployment])[name].check()

    def resolve_many(self, deployments: Iterable[Deployment]) -> dict[str, ResolvedDeployment]:
        """Resolve deployments a caller holds, in one read and two queries whatever their
        number. Tombstones are skipped; a route that resolves to nothing carries its
        ``problem`` instead of raising, so one broken deployment does not hide the others."""
        live = [d for d in deployments if not d.deleted]
        with self._db.read() as conn:
            return _resolve(conn, live)

    def poll(self, revision: int, held: Iterable[Deployment] = ()) -> DeploymentPoll:
        """One polling step for a server: records changed after ``revision``, and the
        current resolution of ``held`` updated with those changes.

        A server starts with ``poll(0)`` (every deployment counts as changed), keeps
        ``poll.revision`` and the live deployments, and reloads a model when a deployment's
        :attr:`ResolvedDeployment.versions` differ from what it serves.
        """
        with self._db.read() as conn:
            changed = [Deployment.from_row(r) for r in _REPO.changed_since(conn, revision)]
            current = {d.name: d for d in held}
            current.update({d.name: d for d in changed})
            live = [d for d in current.values() if not d.deleted]
            resolved = _resolve(conn, live)
        newest = max([revision, *(d.revision for d in changed)])
        return DeploymentPoll(revision=newest, changed=tuple(changed), resolved=resolved)

    # -- internals -----------------------------------------------------------------------------

    def _route(self, model: str) -> Route:
        """A primary route to ``model``, which must name a version that exists now."""
        route = Route(model=model)
        self._models.get(route.ref)  # NotFoundError naming the model, version or alias and the fix
        return route

    def _now_serves(self, route: Route) -> str:
        return self._models.get(route.ref).uri

    def _record(self, conn: Connection, action: str, record: Deployment, details: dict[str, Any]) -> None:
        self._audit.record(
            conn, actor=self._actor, action=action, object_kind="deployment", object_id=record.name, details=details
        )


def _resolve(conn: Connection, deployments: builtins.list[Deployment]) -> dict[str, ResolvedDeployment]:
    versions, aliases = _REPO.model_targets(conn, (r.ref.name for d in deployments for r in d.routes))
    return {
        d.name: ResolvedDeployment(deployment=d, routes=tuple(_resolve_route(r, versions, aliases) for r in d.routes))
        for d in deployments
    }


def resolve_route(conn: Connection, route: Route) -> ResolvedRoute:
    """``route`` resolved against the registry now."""
    versions, aliases = _REPO.model_targets(conn, [route.ref.name])
    return _resolve_route(route, versions, aliases)


def _resolve_route(route: Route, versions: dict[str, set[int]], aliases: dict[tuple[str, str], int]) -> ResolvedRoute:
    ref = route.ref
    existing = versions.get(ref.name, set())
    if ref.alias == "latest":
        if not existing:
            return ResolvedRoute(route=route, version=None, problem=f"model '{ref.name}' has no versions")
        return ResolvedRoute(route=route, version=max(existing))
    version = ref.version if ref.alias is None else aliases.get((ref.name, ref.alias))
    if version is None:
        return ResolvedRoute(
            route=route,
            version=None,
            problem=f"model '{ref.name}' has no alias '{ref.alias}' any more; "
            f"set it (lockgate models alias {ref.name} {ref.alias} VERSION) or point the deployment elsewhere",
        )
    if version not in existing:
        return ResolvedRoute(
            route=route,
            version=None,
            problem=f"{ref} points at version {version} of '{ref.name}', which no longer exists; "
            "point the deployment at another version",
        )
    return ResolvedRoute(route=route, version=version)


def require_live(conn: Connection, name: str) -> Deployment:
    row = _REPO.get(conn, name)
    if row is None or row["deleted"]:
        raise NotFoundError(f"deployment '{name}' does not exist; see: lockgate deploy list")
    return Deployment.from_row(row)


def record_values(record: Deployment) -> dict[str, Any]:
    return {
        "name": record.name,
        "spec": record.spec(),
        "revision": record.revision,
        "deleted": record.deleted,
        "created_at": record.created_at,
        "created_by": record.created_by,
        "updated_at": record.updated_at,
        "updated_by": record.updated_by,
    }


def _settings(settings: SettingsArg) -> ServingSettings | dict[str, Any] | None:
    if settings is None or isinstance(settings, ServingSettings):
        return settings
    return dict(settings)


def _check_name(name: str) -> None:
    if not is_valid_name(name):
        raise InvalidInputError(
            f"deployment name {name!r} is not valid; start with a letter or digit, use letters, digits, '.', '-' or '_'"
        )

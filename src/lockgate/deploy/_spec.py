"""What a deployment is: routes to model versions and the settings its server runs with.

A deployment holds a list of routes, each a model reference with a role and a weight: one
``primary`` route, and while a rollout runs (see :mod:`lockgate.deploy._rollout`) one more for
its candidate: a ``canary``, a ``shadow`` or a ``challenger``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

from lockgate.clock import to_iso
from lockgate.deploy._rollout import Rollout
from lockgate.errors import InvalidInputError, NotFoundError
from lockgate.features import StalePolicy
from lockgate.refs import ModelRef, is_valid_name, parse_model_ref

__all__ = [
    "Deployment",
    "ResolvedDeployment",
    "ResolvedRoute",
    "Role",
    "Route",
    "ServingSettings",
]

Role = Literal["primary", "canary", "shadow", "challenger"]
_ROLES: tuple[str, ...] = get_args(Role)
_STALE_POLICIES: tuple[str, ...] = get_args(StalePolicy)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One model a deployment sends requests to.

    ``model`` is the reference as given: ``models:/fraud@champion`` follows the alias (the
    version is looked up again whenever the deployment is resolved), ``models:/fraud/3`` is
    pinned. ``weight`` is the route's share of traffic among the primary, canary and
    challenger routes; a shadow route gets a copy of every request and answers nobody.

    >>> Route(model="models:/fraud@champion").follows
    'champion'
    """

    model: str
    role: Role = "primary"
    weight: float = 1.0

    def __post_init__(self) -> None:
        parse_model_ref(self.model)  # raises InvalidReferenceError with the accepted forms
        if self.role not in _ROLES:
            raise InvalidInputError(f"route role {self.role!r} is not one of {', '.join(_ROLES)}")
        if not 0.0 <= self.weight <= 1.0:
            raise InvalidInputError(f"route weight {self.weight} is not between 0 and 1")

    @property
    def ref(self) -> ModelRef:
        return parse_model_ref(self.model)

    @property
    def follows(self) -> str | None:
        """The alias this route follows (``latest`` included), or None when it is pinned."""
        return self.ref.alias

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "role": self.role, "weight": self.weight}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        return cls(model=data["model"], role=data.get("role", "primary"), weight=float(data.get("weight", 1.0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServingSettings:
    """How a server runs a deployment.

    Requests are batched up to ``max_batch_size`` rows or ``max_wait_ms`` milliseconds,
    whichever comes first; past ``max_queue`` waiting requests a server sheds load.
    ``stale_policy`` overrides the feature views' own policy for online lookups (None keeps
    theirs), and ``feature_service`` names the service entity lookups use (None: the one the
    model version is bound to). ``contract`` names a registered data contract every request's
    rows must pass (its error-level rules) before they are scored; None checks the model's
    signature only.

    >>> ServingSettings(max_batch_size=0)
    Traceback (most recent call last):
    ...
    lockgate.errors.InvalidInputError: max_batch_size must be a whole number of at least 1, not 0
    """

    max_batch_size: int = 32
    max_wait_ms: int = 0
    max_queue: int = 1024
    stale_policy: StalePolicy | None = None
    feature_service: str | None = None
    contract: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("max_batch_size", 1), ("max_wait_ms", 0), ("max_queue", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"{name} must be a whole number of at least {low}, not {value!r}")
        if self.stale_policy is not None and self.stale_policy not in _STALE_POLICIES:
            raise InvalidInputError(
                f"stale_policy {self.stale_policy!r} is not one of {', '.join(_STALE_POLICIES)} (or unset)"
            )
        if self.feature_service is not None and not is_valid_name(self.feature_service):
            raise InvalidInputError(f"feature service name {self.feature_service!r} is not valid")
        if self.contract is not None and not is_valid_name(self.contract):
            raise InvalidInputError(f"contract name {self.contract!r} is not valid")

    def merged(self, changes: ServingSettings | dict[str, Any] | None) -> ServingSettings:
        """These settings with ``changes`` applied: a mapping changes only the keys it names,
        a :class:`ServingSettings` replaces them all."""
        if changes is None:
            return self
        if isinstance(changes, ServingSettings):
            return changes
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown serving setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServingSettings:
        return cls().merged(dict(data))


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """A deployment as recorded. ``revision`` grows with every write to any deployment;
    ``deleted`` marks a tombstone, which :meth:`DeploymentService.changes_since` reports so a
    server stops serving it."""

    name: str
    routes: tuple[Route, ...]
    settings: ServingSettings
    revision: int
    deleted: bool
    created_at: int
    created_by: str
    updated_at: int
    updated_by: str
    rollout: Rollout | None = None

    @property
    def primary(self) -> Route:
        return next(r for r in self.routes if r.role == "primary")

    @property
    def candidate(self) -> Route | None:
        """The route of the rollout's candidate (None without a rollout)."""
        return next((r for r in self.routes if r.role != "primary"), None)

    def spec(self) -> dict[str, Any]:
        """What the ``spec`` column holds."""
        spec: dict[str, Any] = {"routes": [r.to_dict() for r in self.routes], "settings": self.settings.to_dict()}
        if self.rollout is not None:
            spec["rollout"] = self.rollout.to_dict()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            **self.spec(),
            "revision": self.revision,
            "deleted": self.deleted,
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
            "updated_at": to_iso(self.updated_at),
            "updated_by": self.updated_by,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Deployment:
        spec = row["spec"]
        return cls(
            name=row["name"],
            routes=tuple(Route.from_dict(r) for r in spec["routes"]),
            settings=ServingSettings.from_dict(spec.get("settings", {})),
            revision=int(row["revision"]),
            deleted=bool(row["deleted"]),
            created_at=int(row["created_at"]),
            created_by=row["created_by"],
            updated_at=int(row["updated_at"]),
            updated_by=row["updated_by"],
            rollout=Rollout.from_dict(spec["rollout"]) if spec.get("rollout") else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedRoute:
    """A route and the model version it stands for now (None, with ``problem``, when its
    model, version or alias is gone)."""

    route: Route
    version: int | None
    problem: str | None = None

    @property
    def uri(self) -> str | None:
        return None if self.version is None else f"models:/{self.route.ref.name}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {**self.route.to_dict(), "version": self.version, "resolved": self.uri, "problem": self.problem}


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedDeployment:
    """A deployment with the concrete versions its routes point at, at the time it was read.

    Two resolutions of the same deployment differ in ``versions`` exactly when a server
    should load something else: an alias moved, a version was deleted, or the record changed.
    """

    deployment: Deployment
    routes: tuple[ResolvedRoute, ...]

    @property
    def primary(self) -> ResolvedRoute:
        return next(r for r in self.routes if r.route.role == "primary")

    @property
    def candidate(self) -> ResolvedRoute | None:
        return next((r for r in self.routes if r.route.role != "primary"), None)

    @property
    def versions(self) -> tuple[str | None, ...]:
        """The concrete ``models:/NAME/N`` of each route, in route order."""
        return tuple(r.uri for r in self.routes)

    @property
    def problems(self) -> tuple[str, ...]:
        return tuple(r.problem for r in self.routes if r.problem)

    def check(self) -> ResolvedDeployment:
        """Itself, or NotFoundError naming the first route that resolves to nothing."""
        if self.problems:
            raise NotFoundError(f"deployment '{self.deployment.name}': {self.problems[0]}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.deployment.name,
            "revision": self.deployment.revision,
            "routes": [r.to_dict() for r in self.routes],
        }

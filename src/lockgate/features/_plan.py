"""What an apply would do: the diff per definition, and the consumers a change would break.

>>> from lockgate.features._specs import FieldChange
>>> plan = ApplyPlan(changes=(PlannedChange(kind="feature_view", name="card_stats", action="changed",
...     version="b2", previous="a1", fields=(FieldChange("ttl", "1d", "2d"),)),), violations=(), applied=False)
>>> plan.summary()
'0 added, 1 changed, 0 unchanged'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lockgate.errors import CheckFailed
from lockgate.features._catalog import Catalog
from lockgate.features._specs import KINDS, FieldChange, spec_changes

__all__ = [
    "Action",
    "ApplyPlan",
    "BrokenConsumer",
    "IncompatibleFeatureChange",
    "PlannedChange",
    "plan_changes",
    "refusal",
]

Action = Literal["added", "changed", "unchanged", "removed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedChange:
    """What applying does to one definition. ``removed`` means registered but not among what was
    applied: it stays registered and current (apply never deletes)."""

    kind: str
    name: str
    action: Action
    version: str
    previous: str | None = None
    fields: tuple[FieldChange, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "version": self.version,
            "previous": self.previous,
            "fields": [f.to_dict() for f in self.fields],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokenConsumer:
    """A model version that would lose (or get a retyped) feature it reads."""

    consumer: str
    via: str
    feature: str
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"consumer": self.consumer, "via": self.via, "feature": self.feature, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyPlan:
    """The diff of an apply: every definition given or registered, and every consumer it breaks.

    ``applied`` is False for a dry run (and for a refused apply, whose error carries the plan).
    """

    changes: tuple[PlannedChange, ...]
    violations: tuple[BrokenConsumer, ...]
    applied: bool
    origin: str | None = None

    def _with(self, action: Action) -> list[PlannedChange]:
        return [c for c in self.changes if c.action == action]

    @property
    def added(self) -> list[PlannedChange]:
        return self._with("added")

    @property
    def changed(self) -> list[PlannedChange]:
        return self._with("changed")

    @property
    def unchanged(self) -> list[PlannedChange]:
        return self._with("unchanged")

    @property
    def removed(self) -> list[PlannedChange]:
        """Registered, but not in what was applied: kept registered, not deleted."""
        return self._with("removed")

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        counts = [f"{len(self.added)} added", f"{len(self.changed)} changed", f"{len(self.unchanged)} unchanged"]
        if self.removed:
            counts.append(f"{len(self.removed)} not in the file (kept registered)")
        return ", ".join(counts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "origin": self.origin,
            "summary": self.summary(),
            "changes": [c.to_dict() for c in self.changes],
            "violations": [v.to_dict() for v in self.violations],
        }


class IncompatibleFeatureChange(CheckFailed):
    """An apply would remove or retype a feature a registered model version reads; ``violations`` lists each."""

    def __init__(self, message: str, plan: ApplyPlan) -> None:
        super().__init__(message)
        self.plan = plan
        self.violations = list(plan.violations)


def plan_changes(applied: Catalog, heads: dict[tuple[str, str], dict[str, Any]]) -> list[PlannedChange]:
    changes = []
    for kind, name, definition in applied.items():
        head = heads.get((kind, name))
        version = definition.version
        if head is None:
            changes.append(PlannedChange(kind=kind, name=name, action="added", version=version))
        elif head["version"] == version:
            changes.append(PlannedChange(kind=kind, name=name, action="unchanged", version=version))
        else:
            fields = spec_changes(head["spec"], definition.spec())
            changes.append(
                PlannedChange(
                    kind=kind,
                    name=name,
                    action="changed",
                    version=version,
                    previous=head["version"],
                    fields=tuple(fields),
                )
            )
    for (kind, name), head in sorted(heads.items(), key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        if name not in applied.table(kind):
            changes.append(PlannedChange(kind=kind, name=name, action="removed", version=head["version"]))
    return changes


def refusal(plan: ApplyPlan) -> IncompatibleFeatureChange:
    v = plan.violations
    count = f"{len(v)} problem" + ("s" if len(v) > 1 else "")
    listed = "; ".join(f"({i}) {b.message}" for i, b in enumerate(v, 1))
    return IncompatibleFeatureChange(f"the feature definitions were not applied, {count}: {listed}", plan)

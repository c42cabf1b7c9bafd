"""Checks that validate a pipeline without training anything: the extension point CI uses.

A check gets the traced pipeline (and the workspace, when there is one) and returns a
:class:`CheckResult` with its evidence. lockgate ships the DAG check; the data-contract and
feature-store capabilities register theirs with :func:`register_check`.

>>> from lockgate.pipelines import pipeline, step
>>> @step
... def make() -> int:
...     return 1
>>> @step
... def use(text: str) -> str:
...     return text
>>> @pipeline
... def wrong():
...     return use(make())
>>> [r.ok for r in run_checks(wrong.trace()) if r.name == "dag"]
[False]
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lockgate.pipelines._dsl import PipelineGraph, StepOutput

__all__ = ["Check", "CheckResult", "DagCheck", "register_check", "registered_checks", "run_checks"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    name: str
    ok: bool
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Check(Protocol):
    name: str

    def run(self, graph: PipelineGraph, ws: Any | None) -> CheckResult:
        """Inspect the pipeline (and the workspace, if given); never train or write."""


class DagCheck:
    """Every input is produced upstream with a compatible type (from the functions' annotations)."""

    name = "dag"

    def run(self, graph: PipelineGraph, ws: Any | None) -> CheckResult:
        problems: list[str] = []
        for node in graph.nodes:
            hints = _hints(node.step.fn)
            for arg, value in node.arguments.items():
                if not isinstance(value, StepOutput):
                    continue
                produced = _hints(graph.node(value.node).step.fn).get("return", Any)
                wanted = hints.get(arg, Any)
                if not _compatible(produced, wanted):
                    problems.append(f"{node.name}({arg}: {_name(wanted)}) receives {value.node}'s {_name(produced)}")
        edges = sum(len(n.upstream) for n in graph.nodes)
        if problems:
            return CheckResult(name=self.name, ok=False, message="; ".join(problems), evidence={"problems": problems})
        return CheckResult(
            name=self.name,
            ok=True,
            message=f"{len(graph.nodes)} steps, {edges} edges, acyclic, every input produced with a compatible type",
            evidence={"steps": [n.name for n in graph.nodes]},
        )


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations are simply not checked
        return {}


def _compatible(produced: Any, wanted: Any) -> bool:
    if produced is Any or wanted is Any:
        return True
    produced_origin = typing.get_origin(produced) or produced
    wanted_origin = typing.get_origin(wanted) or wanted
    if typing.get_origin(wanted) is typing.Union or str(typing.get_origin(wanted)) == "<class 'types.UnionType'>":
        return any(_compatible(produced, option) for option in typing.get_args(wanted))
    if isinstance(produced_origin, type) and isinstance(wanted_origin, type):
        return issubclass(produced_origin, wanted_origin)
    return True


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_REGISTERED: list[Check] = [DagCheck()]


def register_check(check: Check) -> None:
    """Add a check that ``lockgate pipeline check`` runs for every pipeline."""
    if not isinstance(check, Check):
        raise TypeError(f"{check!r} is not a check: it needs a name and run(graph, ws) -> CheckResult")
    _REGISTERED.append(check)


def registered_checks() -> Sequence[Check]:
    return tuple(_REGISTERED)


def run_checks(graph: PipelineGraph, ws: Any | None = None) -> list[CheckResult]:
    """Run every registered check; a check that crashes is reported as failed, with why."""
    results = []
    for check in _REGISTERED:
        try:
            results.append(check.run(graph, ws))
        except Exception as exc:  # noqa: BLE001 - a broken check is a failed check, not a crash
            results.append(
                CheckResult(name=check.name, ok=False, message=f"the check crashed: {type(exc).__name__}: {exc}")
            )
    return results

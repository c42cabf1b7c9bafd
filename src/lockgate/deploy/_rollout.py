"""A rollout in progress, as a deployment records it: strategy, candidate and progress.

The rollout travels inside the deployment's record, next to the routes it explains, so a
server that polls deployments learns of a new canary step the same way it learns of any
change, and one write moves routes and progress together.

>>> r = Rollout(strategy="canary", candidate="models:/fraud/4", steps=(5, 50, 100), started_at=0, started_by="user:ana")
>>> r.weight, r.next_step
(0.05, 50)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from lockgate.deploy._analysis import AnalysisPolicy
from lockgate.errors import InvalidInputError
from lockgate.refs import parse_model_ref

__all__ = ["DEFAULT_STEPS", "CandidateRole", "Rollout", "Strategy", "candidate_role"]

Strategy = Literal["shadow", "canary", "split"]
CandidateRole = Literal["shadow", "canary", "challenger"]
_STRATEGIES: tuple[str, ...] = get_args(Strategy)
DEFAULT_STEPS = (5, 25, 50, 100)


_ROLE_OF: dict[str, CandidateRole] = {"shadow": "shadow", "canary": "canary", "split": "challenger"}


def candidate_role(strategy: Strategy) -> CandidateRole:
    """The route role a strategy gives its candidate."""
    return _ROLE_OF[strategy]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """A candidate model version on its way in (or on trial) next to a deployment's primary.

    ``canary``: the candidate takes ``steps[step]`` percent of traffic; every ``interval_ms``
    an analysis compares it with the primary and advances, holds or rolls back. ``split``:
    the challenger takes a fixed ``percent``, for a comparison a person (or delayed labels)
    decides. ``shadow``: the candidate scores a copy of every request and answers nobody.
    ``sticky_key`` names a record field that keeps one caller on one arm (entity requests
    use their entity keys; without either, the ``x-route-key`` header or the request id).
    """

    strategy: Strategy
    candidate: str
    started_at: int
    started_by: str
    steps: tuple[int, ...] = ()
    step: int = 0
    percent: float = 0.0
    interval_ms: int = 60_000
    policy: AnalysisPolicy = field(default_factory=AnalysisPolicy)
    sticky_key: str | None = None
    step_started_at: int = 0
    analyzed_at: int = 0
    analyses: int = 0
    failures: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in _STRATEGIES:
            raise InvalidInputError(f"rollout strategy {self.strategy!r} is not one of {', '.join(_STRATEGIES)}")
        ref = parse_model_ref(self.candidate)
        if ref.version is None:
            raise InvalidInputError(f"a rollout's candidate is a pinned version (models:/NAME/N), not {self.candidate}")
        if self.strategy == "canary":
            _check_steps(self.steps)
            if not 0 <= self.step < len(self.steps):
                raise InvalidInputError(f"canary step {self.step} is outside its {len(self.steps)} steps")
            if self.interval_ms < 1000:
                raise InvalidInputError(f"the analysis interval must be at least 1s, not {self.interval_ms} ms")
        if self.strategy == "split" and not 0 < self.percent < 100:
            raise InvalidInputError(
                f"a challenger's share must be between 0 and 100 percent (exclusive), not {self.percent:g}; "
                "the champion takes the rest"
            )

    @property
    def version(self) -> int:
        """The candidate's version number."""
        version = parse_model_ref(self.candidate).version
        assert version is not None  # checked in __post_init__
        return version

    @property
    def role(self) -> CandidateRole:
        return candidate_role(self.strategy)

    @property
    def weight(self) -> float:
        """The candidate's share of traffic, 0 to 1 (a shadow's copies are not a share)."""
        if self.strategy == "canary":
            return self.steps[self.step] / 100.0
        if self.strategy == "split":
            return self.percent / 100.0
        return 0.0

    @property
    def next_step(self) -> int | None:
        """The percentage the next passed analysis moves a canary to (None when not a canary)."""
        if self.strategy != "canary":
            return None
        return self.steps[min(self.step + 1, len(self.steps) - 1)]

    def advanced(self, now: int) -> Rollout:
        return replace(self, step=self.step + 1, step_started_at=now, analyzed_at=now, failures=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "candidate": self.candidate,
            "started_at": self.started_at,
            "started_by": self.started_by,
            "steps": list(self.steps),
            "step": self.step,
            "percent": self.percent,
            "interval_ms": self.interval_ms,
            "policy": self.policy.to_dict(),
            "sticky_key": self.sticky_key,
            "step_started_at": self.step_started_at,
            "analyzed_at": self.analyzed_at,
            "analyses": self.analyses,
            "failures": self.failures,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rollout:
        values = dict(data)
        values["steps"] = tuple(int(s) for s in values.get("steps", ()))
        values["policy"] = AnalysisPolicy.from_dict(values.get("policy"))
        return cls(**values)


def _check_steps(steps: tuple[int, ...]) -> None:
    hint = "give rising percentages that end at 100, e.g. 5,25,50,100"
    if not steps:
        raise InvalidInputError(f"a canary needs steps; {hint}")
    if any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= 100 for s in steps):
        raise InvalidInputError(f"canary steps {list(steps)} must be whole percentages from 1 to 100; {hint}")
    if list(steps) != sorted(set(steps)):
        raise InvalidInputError(f"canary steps {list(steps)} must rise; {hint}")
    if steps[-1] != 100:
        raise InvalidInputError(f"canary steps {list(steps)} must end at 100; {hint}")
    if len(steps) < 2:
        raise InvalidInputError(f"canary steps {list(steps)} send everything to the candidate at once; {hint}")

"""How a rollout's arms are measured and compared: mergeable histograms, PSI, the verdict.

Servers count what each arm of a deployment under a rollout answers in fixed bins (latency on
a geometric scale, scores on a logit scale), so counts from any number of processes and
servers add up into one window. The analysis then compares the candidate with the stable
version **over the same window**: error rate, p99 latency, and the population stability index
(PSI) of their score distributions. A window with too few requests on either arm is
inconclusive: it holds the rollout rather than judging it on noise.

PSI from samples is biased upwards: two samples of one distribution, of sizes n and m,
show about (k - 1)(1/n + 1/m) over k bins. The check subtracts that expectation before it
compares with the threshold, so a small window does not look like a shift.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> same = score_counts(rng.beta(1, 30, 5000)), score_counts(rng.beta(1, 30, 5000))
>>> round(psi(*same).corrected, 2)
0.0
>>> round(psi(same[0], score_counts(rng.beta(3, 30, 5000))).corrected, 1)
2.6
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from lockgate.errors import InvalidInputError

__all__ = [
    "LATENCY_EDGES_MS",
    "SCORE_EDGES",
    "AnalysisPolicy",
    "ArmWindow",
    "Check",
    "PairStats",
    "Psi",
    "Verdict",
    "compare",
    "latency_bin",
    "merge_rows",
    "psi",
    "score_bins",
    "score_counts",
]

# 50 µs growing by 20% per bin: up to about 100 s in 81 edges, ~10% error on any quantile.
LATENCY_EDGES_MS: tuple[float, ...] = tuple(0.05 * 1.2**k for k in range(81))
# Scores on the logit scale (probabilities) from -12 to 12 in steps of 0.25: fine enough to
# tell a fraud model's 0.001 from its 0.003, where most of its scores live.
SCORE_EDGES = np.arange(-12.0, 12.0 + 1e-9, 0.25)
_SCORE_BINS = len(SCORE_EDGES) + 1
_LATENCY_BINS = len(LATENCY_EDGES_MS) + 1
_PSI_GROUPS = 10


def latency_bin(ms: float) -> int:
    """The latency bin of one request (cheap enough to call per request)."""
    return bisect_right(LATENCY_EDGES_MS, ms)


def score_bins(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The score bin of each value: probabilities (all in [0, 1]) on the logit scale, any
    other number on a signed log scale, so one set of bins serves classifiers and regressors."""
    values = np.asarray(scores, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size and values.min() >= 0.0 and values.max() <= 1.0:
        clipped = np.clip(values, 1e-7, 1 - 1e-7)
        scaled = np.log(clipped / (1 - clipped))
    else:
        scaled = np.sign(values) * np.log1p(np.abs(values))
    return np.searchsorted(SCORE_EDGES, scaled, side="right")


def score_counts(scores: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A full histogram of ``scores`` in the score bins."""
    return np.bincount(score_bins(scores), minlength=_SCORE_BINS)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisPolicy:
    """When a canary passes an analysis.

    The canary fails a window when its error rate exceeds the stable version's by more than
    ``max_error_rate_increase``; when its p99 latency is over ``max_latency_ratio`` times the
    stable one's *and* more than ``latency_slack_ms`` above it (sub-millisecond p99s double
    on noise); or when the PSI of its scores against the stable version's, corrected for
    sample size, is over ``max_psi``. A window with fewer than ``min_requests`` on either arm
    is inconclusive, unless the canary answered nothing at all while the stable version
    answered enough: that fails (a canary no server can load would otherwise hold forever).
    ``failure_limit`` failed windows in a row roll the canary back.

    >>> AnalysisPolicy(max_psi=-1)
    Traceback (most recent call last):
    ...
    lockgate.errors.InvalidInputError: max_psi must be a number of at least 0, not -1
    """

    max_error_rate_increase: float = 0.02
    max_latency_ratio: float = 2.0
    latency_slack_ms: float = 10.0
    max_psi: float = 0.25
    min_requests: int = 200
    failure_limit: int = 2

    def __post_init__(self) -> None:
        for name in ("max_error_rate_increase", "max_latency_ratio", "latency_slack_ms", "max_psi"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise InvalidInputError(f"{name} must be a number of at least 0, not {value!r}")
        for name in ("min_requests", "failure_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be a whole number of at least 1, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> AnalysisPolicy:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown analysis setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**data)


@dataclass(slots=True)
class PairStats:
    """How a shadow's answers compared with the primary's on the same requests."""

    pairs: int = 0
    agree: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0

    def add(self, other: PairStats) -> None:
        self.pairs += other.pairs
        self.agree += other.agree
        self.sx += other.sx
        self.sy += other.sy
        self.sxx += other.sxx
        self.syy += other.syy
        self.sxy += other.sxy

    @property
    def agreement(self) -> float | None:
        """The share of requests where both gave the same answer (label, or prediction)."""
        return self.agree / self.pairs if self.pairs else None

    @property
    def correlation(self) -> float | None:
        """Pearson correlation of the primary's and the shadow's scores."""
        n = self.pairs
        if n < 2:
            return None
        vx = self.sxx - self.sx * self.sx / n
        vy = self.syy - self.sy * self.sy / n
        if vx <= 0 or vy <= 0:
            return None
        return max(-1.0, min(1.0, (self.sxy - self.sx * self.sy / n) / math.sqrt(vx * vy)))

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("pairs", "agree", "sx", "sy", "sxx", "syy", "sxy")}


@dataclass(slots=True)
class ArmWindow:
    """One arm's counts over a window, summed over every server process."""

    version: int
    role: str
    requests: int = 0
    errors: int = 0
    latency: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(_LATENCY_BINS, np.int64))
    scores: np.ndarray[Any, Any] = field(default_factory=lambda: np.zeros(_SCORE_BINS, np.int64))
    pairs: PairStats = field(default_factory=PairStats)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` quantile of latency, interpolated inside its bin."""
        total = int(self.latency.sum())
        if total == 0:
            return None
        cumulative = np.cumsum(self.latency)
        index = int(np.searchsorted(cumulative, q * total, side="left"))
        low = 0.0 if index == 0 else LATENCY_EDGES_MS[index - 1]
        high = LATENCY_EDGES_MS[min(index, len(LATENCY_EDGES_MS) - 1)]
        before = 0 if index == 0 else int(cumulative[index - 1])
        inside = int(self.latency[index]) or 1
        return low + (high - low) * min(1.0, (q * total - before) / inside)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": self.version,
            "role": self.role,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.latency_ms(0.5),
            "p99_ms": self.latency_ms(0.99),
        }
        if self.pairs.pairs:
            out.update(
                compared=self.pairs.pairs, agreement=self.pairs.agreement, score_correlation=self.pairs.correlation
            )
        return out


def merge_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[int, str], ArmWindow]:
    """Sum stored statistics rows (``version, role, requests, errors, stats``) per arm."""
    arms: dict[tuple[int, str], ArmWindow] = {}
    for row in rows:
        key = (int(row["version"]), str(row["role"]))
        arm = arms.get(key)
        if arm is None:
            arm = arms[key] = ArmWindow(version=key[0], role=key[1])
        arm.requests += int(row["requests"])
        arm.errors += int(row["errors"])
        stats = row["stats"] or {}
        for name, target in (("latency", arm.latency), ("scores", arm.scores)):
            for index, count in (stats.get(name) or {}).items():
                target[min(int(index), len(target) - 1)] += int(count)
        if stats.get("pairs"):
            arm.pairs.add(PairStats(**stats["pairs"]))
    return arms


@dataclass(frozen=True, slots=True)
class Psi:
    """PSI of two score histograms: as measured, what sampling alone would show, and the
    difference the threshold applies to."""

    value: float
    expected_noise: float

    @property
    def corrected(self) -> float:
        return max(0.0, self.value - self.expected_noise)


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any], *, groups: int = _PSI_GROUPS) -> Psi:
    """PSI of ``actual`` against ``expected`` (fine-bin counts), over ``groups`` bins of about
    equal mass in ``expected`` (fewer when its mass sits in fewer fine bins)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    n_e, n_a = e.sum(), a.sum()
    if n_e == 0 or n_a == 0:
        return Psi(value=math.nan, expected_noise=math.nan)
    # Cut where the stable arm's cumulative mass crosses each 1/groups: quantile bins.
    cumulative = np.cumsum(e) / n_e
    cuts = np.unique(np.searchsorted(cumulative, np.arange(1, groups) / groups, side="left"))
    bounds = [0, *(int(c) + 1 for c in cuts if c + 1 < len(e)), len(e)]
    bounds = sorted(set(bounds))
    ge = np.add.reduceat(e, bounds[:-1])
    ga = np.add.reduceat(a, bounds[:-1])
    k = len(ge)
    # Half a count per bin keeps an empty bin finite without moving a populated one.
    pe = (ge + 0.5) / (n_e + 0.5 * k)
    pa = (ga + 0.5) / (n_a + 0.5 * k)
    value = float(np.sum((pa - pe) * np.log(pa / pe)))
    return Psi(value=value, expected_noise=float((k - 1) * (1.0 / n_e + 1.0 / n_a)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One comparison of an analysis: the canary's value, the limit it was held to, and
    whether it passed (None when the window could not say)."""

    name: str
    canary: float | None
    stable: float | None
    limit: float | None
    passed: bool | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "canary": _finite(self.canary),
            "stable": _finite(self.stable),
            "limit": _finite(self.limit),
            "passed": self.passed,
            "detail": self.detail,
        }


Outcome = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """What one analysis window found."""

    outcome: Outcome
    checks: tuple[Check, ...]
    canary: dict[str, Any]
    stable: dict[str, Any]

    @property
    def reason(self) -> str:
        failed = [c.detail for c in self.checks if c.passed is False]
        if failed:
            return "; ".join(failed)
        unknown = [c.detail for c in self.checks if c.passed is None]
        return "; ".join(unknown) if unknown else "every check passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "checks": [c.to_dict() for c in self.checks],
            "canary": {k: _finite(v) for k, v in self.canary.items()},
            "stable": {k: _finite(v) for k, v in self.stable.items()},
        }


def compare(stable: ArmWindow, canary: ArmWindow, policy: AnalysisPolicy) -> Verdict:
    """Judge ``canary`` against ``stable`` over the same window."""
    summaries = {"canary": canary.summary(), "stable": stable.summary()}
    if canary.requests == 0 and stable.requests >= policy.min_requests:
        # Not too little traffic: traffic the canary never answered (it failed to load on
        # every server, or nothing routes to it). Holding would hold forever.
        check = Check(
            name="requests",
            canary=0,
            stable=stable.requests,
            limit=policy.min_requests,
            passed=False,
            detail=f"the canary answered no requests while the stable version answered {stable.requests}: "
            "it is not being served (the server log says why)",
        )
        return Verdict(outcome="fail", checks=(check,), **summaries)
    low = min(stable.requests, canary.requests)
    if low < policy.min_requests:
        check = Check(
            name="requests",
            canary=canary.requests,
            stable=stable.requests,
            limit=policy.min_requests,
            passed=None,
            detail=f"too little traffic to judge: {canary.requests} canary and {stable.requests} stable requests "
            f"in the window, {policy.min_requests} needed on each",
        )
        return Verdict(outcome="inconclusive", checks=(check,), **summaries)
    checks = [_error_check(stable, canary, policy), _latency_check(stable, canary, policy)]
    checks.append(_psi_check(stable, canary, policy))
    if any(c.passed is False for c in checks):
        outcome: Outcome = "fail"
    elif any(c.passed is None for c in checks):
        outcome = "inconclusive"
    else:
        outcome = "pass"
    return Verdict(outcome=outcome, checks=tuple(checks), **summaries)


def _error_check(stable: ArmWindow, canary: ArmWindow, policy: AnalysisPolicy) -> Check:
    c, s = canary.error_rate or 0.0, stable.error_rate or 0.0
    limit = s + policy.max_error_rate_increase
    passed = c <= limit
    verb = "within" if passed else "over"
    return Check(
        name="error_rate",
        canary=c,
        stable=s,
        limit=limit,
        passed=passed,
        detail=f"error rate {c:.1%} vs stable {s:.1%}: {verb} the limit {limit:.1%}",
    )


def _latency_check(stable: ArmWindow, canary: ArmWindow, policy: AnalysisPolicy) -> Check:
    c, s = canary.latency_ms(0.99), stable.latency_ms(0.99)
    if c is None or s is None:
        return Check(name="p99_latency_ms", canary=c, stable=s, limit=None, passed=None, detail="no latency recorded")
    limit = max(s * policy.max_latency_ratio, s + policy.latency_slack_ms)
    passed = c <= limit
    verb = "within" if passed else "over"
    return Check(
        name="p99_latency_ms",
        canary=c,
        stable=s,
        limit=limit,
        passed=passed,
        detail=f"p99 latency {c:.1f} ms vs stable {s:.1f} ms: {verb} the limit {limit:.1f} ms",
    )


def _psi_check(stable: ArmWindow, canary: ArmWindow, policy: AnalysisPolicy) -> Check:
    if not canary.scores.any() or not stable.scores.any():
        return Check(
            name="score_psi",
            canary=None,
            stable=None,
            limit=policy.max_psi,
            passed=True,
            detail="no scores to compare (the model answers labels only): PSI not checked",
        )
    measured = psi(stable.scores, canary.scores)
    passed = measured.corrected <= policy.max_psi
    verb = "within" if passed else "over"
    return Check(
        name="score_psi",
        canary=measured.corrected,
        stable=None,
        limit=policy.max_psi,
        passed=passed,
        detail=f"score PSI {measured.corrected:.3f} (measured {measured.value:.3f}, "
        f"{measured.expected_noise:.3f} expected from sampling): {verb} the limit {policy.max_psi:g}",
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""``ws.rollouts``: shadow, canary and champion-challenger rollouts, analysed and decided.

A rollout adds its candidate's route to a deployment and records its progress in the same
row (see :class:`~lockgate.deploy.Rollout`), so running servers pick it up by polling, with no
restart. Servers report what each arm answered (:meth:`RolloutService.record_stats`); for a
canary, every interval one of them (the holder of the analysis lease) calls
:meth:`RolloutService.analyze_due`, which compares the arms over the same window and decides:

* **hold**: too little traffic to judge, or a failed window under the failure limit;
* **advance** to the next step when the window passed;
* **promote** when the step before 100% passed: the deployment's alias moves through the
  registry's one alias-move path, so promotion gates apply (a pinned deployment gets the
  candidate as its version instead);
* **roll back** when ``failure_limit`` windows in a row failed.

Every decision is an audit event on the deployment; :meth:`RolloutService.status` reads them
back with the arms' current figures.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from lockgate.audit import AuditLog
from lockgate.clock import now_millis, parse_duration
from lockgate.deploy._analysis import AnalysisPolicy, ArmWindow, Verdict, compare, merge_rows, psi
from lockgate.deploy._rollout import DEFAULT_STEPS, Rollout, Strategy
from lockgate.deploy._service import record_values, require_live, resolve_route
from lockgate.deploy._spec import Deployment, Route
from lockgate.errors import ConflictError, InvalidInputError, LockgateError
from lockgate.refs import parse_model_ref
from lockgate.registry import ModelRegistry
from lockgate.store import Database, DeploymentRepository, LeaseRepository, RolloutStatsRepository

__all__ = ["Decision", "RolloutService", "RolloutStatus"]

_log = logging.getLogger(__name__)
_DEPLOYMENTS = DeploymentRepository()
_STATS = RolloutStatsRepository()
_LEASES = LeaseRepository()
_LEASE = "rollout-analysis"

Action = Literal["hold", "advance", "promote", "rollback"]
_EVENT_PREFIX = "deployment.rollout."
# Statistics older than this are pruned; status windows never reach further back.
STATS_RETENTION_MS = 24 * 3600 * 1000
_STATUS_WINDOW_MS = 3600 * 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What one canary analysis decided, and the verdict it decided on."""

    deployment: str
    action: Action
    verdict: Verdict
    percent: int
    next_percent: int | None
    at: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "action": self.action,
            "percent": self.percent,
            "next_percent": self.next_percent,
            "at": self.at,
            "verdict": self.verdict.to_dict(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutStatus:
    """A deployment's rollout as :meth:`RolloutService.status` sees it: its record, the arms'
    figures over the current window, and the rollout decisions on record, newest first."""

    deployment: Deployment
    arms: tuple[dict[str, Any], ...]
    window: tuple[int, int]
    score_psi: float | None
    next_analysis_at: int | None
    events: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        rollout = self.deployment.rollout
        return {
            "deployment": self.deployment.name,
            "routes": [r.to_dict() for r in self.deployment.routes],
            "rollout": None if rollout is None else rollout.to_dict(),
            "window": {"start": self.window[0], "end": self.window[1]},
            "arms": list(self.arms),
            "score_psi": self.score_psi,
            "next_analysis_at": self.next_analysis_at,
            "events": list(self.events),
        }


class RolloutService:
    """``ws.rollouts``: start, analyse, promote and roll back rollouts of deployments.

    >>> import lockgate as lg, tempfile
    >>> from sklearn.dummy import DummyClassifier
    >>> ws = lg.Workspace.open(tempfile.mkdtemp())
    >>> for _ in range(2):
    ...     _ = ws.models.register(DummyClassifier().fit([[0], [1]], [0, 1]), name="fraud")
    >>> _ = ws.models.set_alias("fraud", "champion", 1)
    >>> _ = ws.deployments.create("fraud-api", "models:/fraud@champion")
    >>> d = ws.rollouts.canary("fraud-api", "models:/fraud/2", steps=(10, 50, 100), interval="30s")
    >>> [(r.role, r.weight) for r in d.routes]
    [('primary', 0.9), ('canary', 0.1)]
    >>> ws.rollouts.promote("fraud-api").routes, ws.models.get("models:/fraud@champion").version
    ((Route(model='models:/fraud@champion', role='primary', weight=1.0),), 2)
    >>> ws.close()
    """

    def __init__(self, db: Database, audit: AuditLog, models: ModelRegistry, *, actor: str) -> None:
        self._db = db
        self._audit = audit
        self._models = models
        self._actor = actor

    # -- starting ------------------------------------------------------------------------------

    def shadow(self, name: str, candidate: str) -> Deployment:
        """Send a copy of every request of ``name`` to ``candidate``, off the response path.

        Both answers are logged by request id; :meth:`status` shows how often they agree."""
        return self._start(name, "shadow", candidate)

    def canary(
        self,
        name: str,
        candidate: str,
        *,
        steps: Iterable[int] = DEFAULT_STEPS,
        interval: str | float = "60s",
        policy: AnalysisPolicy | Mapping[str, Any] | None = None,
        sticky_key: str | None = None,
    ) -> Deployment:
        """Give ``candidate`` ``steps[0]`` percent of ``name``'s traffic, and let the analysis
        move it through ``steps`` (ending at 100: promoted) or roll it back.

        ``interval`` is how often the analysis runs (``"60s"``, ``"5m"`` or seconds)."""
        interval_ms = int(parse_duration(interval).total_seconds() * 1000)
        chosen = policy if isinstance(policy, AnalysisPolicy) else AnalysisPolicy.from_dict(policy)
        return self._start(
            name,
            "canary",
            candidate,
            steps=tuple(steps),
            interval_ms=interval_ms,
            policy=chosen,
            sticky_key=sticky_key,
        )

    def split(self, name: str, challenger: str, *, percent: float, sticky_key: str | None = None) -> Deployment:
        """Champion-challenger: a fixed, sticky ``percent`` of ``name``'s traffic goes to
        ``challenger`` until someone promotes it or rolls it back. Each arm's predictions are
        logged with its role, ready for a comparison on labels."""
        return self._start(name, "split", challenger, percent=float(percent), sticky_key=sticky_key)

    def _start(self, name: str, strategy: Strategy, candidate: str, **options: Any) -> Deployment:
        version = self._models.get(candidate)  # NotFoundError naming what is missing
        pinned = version.uri
        with self._db.write() as conn:
            _DEPLOYMENTS.lock(conn)
            current = require_live(conn, name)
            if current.rollout is not None:
                raise ConflictError(
                    f"deployment '{name}' already has a {current.rollout.strategy} of {current.rollout.candidate}; "
                    f"promote or roll it back first: lockgate deploy promote|rollback {name}"
                )
            serving = _serves(conn, current)
            if serving == pinned:
                raise InvalidInputError(
                    f"deployment '{name}' already serves {pinned}; a candidate must be another version"
                )
            now = now_millis()
            rollout = Rollout(
                strategy=strategy,
                candidate=pinned,
                started_at=now,
                started_by=self._actor,
                step_started_at=now,
                analyzed_at=now,
                **options,
            )
            routes = (
                replace(current.primary, weight=1.0 - rollout.weight),
                Route(model=pinned, role=rollout.role, weight=rollout.weight),
            )
            record = self._write(conn, current, routes=routes, rollout=rollout)
            self._event(
                conn,
                record,
                "started",
                {"strategy": strategy, "candidate": pinned, "stable": serving, **_progress(rollout)},
            )
        return record

    # -- ending --------------------------------------------------------------------------------

    def promote(self, name: str, *, reason: str = "promoted by hand") -> Deployment:
        """Make the rollout's candidate what ``name`` serves, and end the rollout.

        A deployment that follows an alias of the candidate's model gets the alias moved
        (through :meth:`ModelRegistry.set_alias`, so promotion gates may refuse); any other
        gets the candidate pinned as its primary route."""
        current = self.get_rollout(name)
        rollout = current.rollout
        assert rollout is not None
        primary, candidate = current.primary.ref, rollout.candidate
        moved: str | None = None
        if primary.alias not in (None, "latest") and primary.name == parse_model_ref(candidate).name:
            assert primary.alias is not None
            before = self._models.get(current.primary.model).version
            self._models.set_alias(primary.name, primary.alias, rollout.version)
            moved = f"{primary.name}@{primary.alias} moved from version {before} to {rollout.version}"
            new_primary = Route(model=current.primary.model)
        else:
            new_primary = Route(model=candidate)
        with self._db.write() as conn:
            _DEPLOYMENTS.lock(conn)
            now_record = require_live(conn, name)
            if now_record.rollout != rollout:
                raise ConflictError(
                    f"deployment '{name}' changed while its candidate was being promoted; look at it again "
                    f"(lockgate deploy status {name})" + (f" — note: {moved}" if moved else "")
                )
            record = self._write(conn, now_record, routes=(new_primary,), rollout=None)
            self._event(
                conn,
                record,
                "promoted",
                {"candidate": candidate, "reason": reason, "how": moved or f"primary route pinned to {candidate}"},
            )
        return record

    def rollback(self, name: str, *, reason: str = "rolled back by hand") -> Deployment:
        """End ``name``'s rollout: the candidate's route goes, the primary takes all traffic."""
        with self._db.write() as conn:
            _DEPLOYMENTS.lock(conn)
            current = require_live(conn, name)
            if current.rollout is None:
                raise ConflictError(
                    f"deployment '{name}' has no rollout to roll back; see: lockgate deploy status {name}"
                )
            return self._roll_back(conn, current, reason)

    def _roll_back(self, conn: Any, current: Deployment, reason: str, verdict: Verdict | None = None) -> Deployment:
        rollout = current.rollout
        assert rollout is not None
        record = self._write(conn, current, routes=(replace(current.primary, weight=1.0),), rollout=None)
        details: dict[str, Any] = {"candidate": rollout.candidate, "reason": reason}
        if verdict is not None:
            details["verdict"] = verdict.to_dict()
        self._event(conn, record, "rolled_back", details)
        return record

    # -- analysis ------------------------------------------------------------------------------

    def analyze(self, name: str, *, now: int | None = None, force: bool = False) -> Decision | None:
        """Run the canary analysis of ``name`` if it is due (or ``force``), apply its decision
        and return it; None when ``name`` has no canary or it is not due yet."""
        now = now_millis() if now is None else now
        with self._db.read() as conn:
            current = require_live(conn, name)
        rollout = current.rollout
        if rollout is None or rollout.strategy != "canary":
            if force:
                raise ConflictError(f"deployment '{name}' has no canary to analyse; see: lockgate deploy status {name}")
            return None
        if not force and now < rollout.analyzed_at + rollout.interval_ms:
            return None
        start = max(rollout.step_started_at, now - rollout.interval_ms)
        with self._db.read() as conn:
            arms = merge_rows(_STATS.window(conn, name, start, now))
            stable_version = _version_of(conn, current.primary)
        stable = arms.get((stable_version or -1, "primary")) or ArmWindow(version=stable_version or -1, role="primary")
        canary = arms.get((rollout.version, "canary")) or ArmWindow(version=rollout.version, role="canary")
        verdict = compare(stable, canary, rollout.policy)
        action: Action
        if verdict.outcome == "pass":
            action = "promote" if rollout.next_step == 100 else "advance"
        elif verdict.outcome == "fail" and rollout.failures + 1 >= rollout.policy.failure_limit:
            action = "rollback"
        else:
            action = "hold"
        decision = Decision(
            deployment=name,
            action=action,
            verdict=verdict,
            percent=rollout.steps[rollout.step],
            next_percent=rollout.next_step if action in ("advance", "promote") else None,
            at=now,
        )
        with self._db.write() as conn:
            _DEPLOYMENTS.lock(conn)
            latest = require_live(conn, name)
            if latest.rollout != rollout:
                return None  # decided elsewhere, or changed by hand, while this window was read
            counted = replace(
                rollout,
                analyzed_at=now,
                analyses=rollout.analyses + 1,
                failures=rollout.failures + 1 if verdict.outcome == "fail" else rollout.failures,
            )
            self._event(conn, latest, "analysis", {**decision.to_dict(), "failures": counted.failures})
            if action == "rollback":
                failed = f"{counted.failures} failed {'analysis' if counted.failures == 1 else 'analyses'} in a row"
                self._roll_back(conn, latest, f"the canary reached its failure limit ({failed})", verdict)
            elif action == "advance":
                advanced = counted.advanced(now)
                routes = (
                    replace(latest.primary, weight=1.0 - advanced.weight),
                    replace(_candidate_route(latest), weight=advanced.weight),
                )
                record = self._write(conn, latest, routes=routes, rollout=advanced)
                self._event(conn, record, "advanced", _progress(advanced))
            else:  # hold, or promote (which moves the alias outside this transaction first)
                self._write(conn, latest, routes=latest.routes, rollout=counted)
        if action == "promote":
            try:
                self.promote(name, reason="the canary passed every step's analysis")
            except LockgateError as exc:  # a promotion gate said no: the candidate does not stay
                _log.warning("deployment %s: promotion refused (%s); rolling the canary back", name, exc)
                with self._db.write() as conn:
                    _DEPLOYMENTS.lock(conn)
                    latest = require_live(conn, name)
                    if latest.rollout is not None and latest.rollout.candidate == rollout.candidate:
                        self._roll_back(conn, latest, f"promotion refused: {exc}")
        return decision

    def analyze_due(self, *, now: int | None = None) -> builtins.list[Decision]:
        """Analyse every canary whose interval has passed (what a server's analyst calls)."""
        now = now_millis() if now is None else now
        with self._db.read() as conn:
            canaries = [
                Deployment.from_row(r)
                for r in _DEPLOYMENTS.list(conn)
                if (r["spec"].get("rollout") or {}).get("strategy") == "canary"
            ]
        decisions = []
        for deployment in canaries:
            try:
                decision = self.analyze(deployment.name, now=now)
            except LockgateError as exc:  # one deployment's trouble must not stop the others'
                _log.warning("deployment %s: analysis failed: %s", deployment.name, exc)
                continue
            if decision is not None:
                decisions.append(decision)
        return decisions

    # -- statistics ----------------------------------------------------------------------------

    def record_stats(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Store what a server saw (rows of ``deployment, version, role, ts, worker, requests,
        errors, stats``): telemetry, not a change, so it is not audited."""
        values = [dict(r) for r in rows]
        if values:
            with self._db.write() as conn:
                _STATS.append(conn, values)

    def prune_stats(self, *, now: int | None = None) -> int:
        """Delete statistics older than a day; how many rows went."""
        now = now_millis() if now is None else now
        with self._db.write() as conn:
            return _STATS.prune(conn, now - STATS_RETENTION_MS)

    def take_analysis_lease(self, holder: str, *, ttl_ms: int) -> bool:
        """Take or renew the one lease that lets a process run analyses; False while another
        holder's lease is live (so each decision is made once, however many servers run)."""
        with self._db.write() as conn:
            return _LEASES.acquire(conn, _LEASE, holder=holder, now=now_millis(), ttl_ms=ttl_ms)

    def release_analysis_lease(self, holder: str) -> None:
        with self._db.write() as conn:
            _LEASES.release(conn, _LEASE, holder=holder)

    # -- reading -------------------------------------------------------------------------------

    def get_rollout(self, name: str) -> Deployment:
        """The deployment ``name``, which must have a rollout (ConflictError otherwise)."""
        with self._db.read() as conn:
            current = require_live(conn, name)
        if current.rollout is None:
            raise ConflictError(
                f"deployment '{name}' has no rollout; start one: lockgate deploy canary|shadow|split {name} ..."
            )
        return current

    def status(self, name: str, *, now: int | None = None) -> RolloutStatus:
        """``name``'s rollout (if any), each arm's figures over the current window (a canary's
        running step window; the last hour otherwise) and the rollout decisions on record."""
        now = now_millis() if now is None else now
        with self._db.read() as conn:
            current = require_live(conn, name)
            rollout = current.rollout
            if rollout is not None and rollout.strategy == "canary":
                start = max(rollout.step_started_at, now - rollout.interval_ms)
            elif rollout is not None:
                start = max(rollout.started_at, now - _STATUS_WINDOW_MS)
            else:
                start = now - _STATUS_WINDOW_MS
            arms = merge_rows(_STATS.window(conn, name, start, now + 1))
        by_role = {role: arm for (_v, role), arm in arms.items()}
        score_psi = None
        stable, other = by_role.get("primary"), next((a for r, a in by_role.items() if r != "primary"), None)
        if stable is not None and other is not None and stable.scores.any() and other.scores.any():
            score_psi = psi(stable.scores, other.scores).corrected
        events = [
            {"seq": e.seq, "at": e.ts, "actor": e.actor, "event": e.action[len(_EVENT_PREFIX) :], **e.details}
            for e in self._audit.events(object_kind="deployment", object_id=name, limit=200)
            if e.action.startswith(_EVENT_PREFIX)
        ]
        next_at = None
        if rollout is not None and rollout.strategy == "canary":
            next_at = rollout.analyzed_at + rollout.interval_ms
        return RolloutStatus(
            deployment=current,
            arms=tuple(a.summary() for _k, a in sorted(arms.items(), key=lambda kv: kv[0][1] != "primary")),
            window=(start, now),
            score_psi=score_psi,
            next_analysis_at=next_at,
            events=tuple(events),
        )

    # -- internals -----------------------------------------------------------------------------

    def _write(
        self, conn: Any, current: Deployment, *, routes: tuple[Route, ...], rollout: Rollout | None
    ) -> Deployment:
        record = replace(
            current,
            routes=routes,
            rollout=rollout,
            revision=_DEPLOYMENTS.next_revision(conn),
            updated_at=now_millis(),
            updated_by=self._actor,
        )
        _DEPLOYMENTS.replace(conn, **record_values(record))
        return record

    def _event(self, conn: Any, record: Deployment, what: str, details: dict[str, Any]) -> None:
        self._audit.record(
            conn,
            actor=self._actor,
            action=_EVENT_PREFIX + what,
            object_kind="deployment",
            object_id=record.name,
            details={"revision": record.revision, **details},
        )


def _candidate_route(deployment: Deployment) -> Route:
    route = deployment.candidate
    assert route is not None
    return route


def _serves(conn: Any, deployment: Deployment) -> str | None:
    version = _version_of(conn, deployment.primary)
    return None if version is None else f"models:/{deployment.primary.ref.name}/{version}"


def _version_of(conn: Any, route: Route) -> int | None:
    """The version a route resolves to now (None when it resolves to nothing)."""
    return resolve_route(conn, route).version


def _progress(rollout: Rollout) -> dict[str, Any]:
    out: dict[str, Any] = {"percent": round(rollout.weight * 100, 3)}
    if rollout.strategy == "canary":
        out.update(steps=list(rollout.steps), step=rollout.step, interval_ms=rollout.interval_ms)
        out["policy"] = rollout.policy.to_dict()
    return out

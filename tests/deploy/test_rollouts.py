"""Rollouts on every metadata backend: starting them, the canary analysis's decisions from
servers' statistics, promotion through the registry's alias path, rollback, the audit trail,
and errors that leave nothing half-applied."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

import lockgate as lg
from lockgate.deploy._analysis import latency_bin, score_bins
from lockgate.registry.hooks import AliasMove


@pytest.fixture
def fraud(backend_ws: lg.Workspace) -> lg.Workspace:
    """Four versions of ``fraud``, ``champion`` on 1, deployed as ``fraud-api`` following it."""
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    for _ in range(4):
        backend_ws.models.register(model, name="fraud")
    backend_ws.models.set_alias("fraud", "champion", 1)
    backend_ws.deployments.create("fraud-api", "models:/fraud@champion")
    return backend_ws


def _rows(
    version: int, role: str, *, requests: int, errors: int = 0, ms: float = 2.0, scores: Any = None, ts: int
) -> dict[str, Any]:
    """What a server flushes for one arm: ``requests`` answered in ``ms`` with ``scores``."""
    values = np.full(requests, 0.1) if scores is None else np.asarray(scores)
    counts: dict[str, int] = {}
    for b in score_bins(values).tolist():
        counts[str(b)] = counts.get(str(b), 0) + 1
    return {
        "deployment": "fraud-api",
        "version": version,
        "role": role,
        "ts": ts,
        "worker": "test:1",
        "requests": requests,
        "errors": errors,
        "stats": {"latency": {str(latency_bin(ms)): requests}, "scores": counts},
    }


def _traffic(ws: lg.Workspace, at: int, *, canary: dict[str, Any] | None = None, n: int = 400) -> None:
    rng = np.random.default_rng(at % 1000)
    stable = _rows(1, "primary", requests=n, scores=rng.beta(1, 20, n), ts=at)
    options = {"requests": n, "scores": rng.beta(1, 20, n), **(canary or {})}
    ws.rollouts.record_stats([stable, _rows(2, "canary", ts=at, **options)])


def _canary(ws: lg.Workspace, **options: Any) -> lg.Deployment:
    options = {"steps": (10, 50, 100), "interval": "60s", **options}
    return ws.rollouts.canary("fraud-api", "models:/fraud/2", **options)


def _events(ws: lg.Workspace) -> list[str]:
    return [e["event"] for e in reversed(ws.rollouts.status("fraud-api").events)]


def test_a_canary_adds_a_weighted_route_and_is_audited(fraud: lg.Workspace) -> None:
    d = _canary(fraud, sticky_key="card_id")
    assert [(r.model, r.role, r.weight) for r in d.routes] == [
        ("models:/fraud@champion", "primary", 0.9),
        ("models:/fraud/2", "canary", 0.1),
    ]
    assert d.rollout is not None
    assert (d.rollout.steps, d.rollout.interval_ms, d.rollout.sticky_key) == ((10, 50, 100), 60_000, "card_id")
    assert fraud.deployments.resolve("fraud-api").versions == ("models:/fraud/1", "models:/fraud/2")
    event = fraud.audit.events(object_kind="deployment", object_id="fraud-api", limit=1)[0]
    assert (event.action, event.actor) == ("deployment.rollout.started", fraud.settings.actor)
    assert event.details["candidate"] == "models:/fraud/2"
    assert event.details["stable"] == "models:/fraud/1"


def test_a_candidate_given_by_alias_is_pinned_to_the_version_it_names_now(fraud: lg.Workspace) -> None:
    fraud.models.set_alias("fraud", "challenger", 3)
    d = fraud.rollouts.split("fraud-api", "models:/fraud@challenger", percent=20)
    assert d.candidate is not None
    assert (d.candidate.model, d.candidate.role, d.candidate.weight) == ("models:/fraud/3", "challenger", 0.2)


def test_a_passing_canary_advances_then_promotes_by_moving_the_alias(fraud: lg.Workspace) -> None:
    d = _canary(fraud)
    assert d.rollout is not None
    t0 = d.rollout.started_at
    _traffic(fraud, t0 + 30_000)
    assert fraud.rollouts.analyze("fraud-api", now=t0 + 59_000) is None  # not due yet
    first = fraud.rollouts.analyze("fraud-api", now=t0 + 60_000)
    assert first is not None
    assert (first.action, first.percent, first.next_percent) == ("advance", 10, 50)
    assert [r.weight for r in fraud.deployments.get("fraud-api").routes] == [0.5, 0.5]

    _traffic(fraud, t0 + 90_000)
    second = fraud.rollouts.analyze("fraud-api", now=t0 + 120_000)
    assert second is not None
    assert (second.action, second.verdict.outcome) == ("promote", "pass")
    after = fraud.deployments.get("fraud-api")
    assert (after.rollout, [(r.model, r.weight) for r in after.routes]) == (None, [("models:/fraud@champion", 1.0)])
    assert fraud.models.get("models:/fraud@champion").version == 2
    assert _events(fraud) == ["started", "analysis", "advanced", "analysis", "promoted"]
    moved = fraud.audit.events(object_kind="model", object_id="fraud", limit=1)[0]
    assert (moved.action, moved.details["from"], moved.details["to"]) == ("alias.moved", 1, 2)
    assert fraud.audit.verify().ok


def test_a_window_reads_only_the_current_step(fraud: lg.Workspace) -> None:
    d = _canary(fraud)
    assert d.rollout is not None
    t0 = d.rollout.started_at
    _traffic(fraud, t0 + 30_000)
    first = fraud.rollouts.analyze("fraud-api", now=t0 + 60_000)
    assert first is not None
    assert first.action == "advance"
    _traffic(fraud, t0 + 59_000, canary={"errors": 400})  # flushed late, but from the step before
    _traffic(fraud, t0 + 90_000)
    second = fraud.rollouts.analyze("fraud-api", now=t0 + 120_000)
    assert second is not None
    assert (second.action, second.verdict.canary["errors"]) == ("promote", 0)


def test_errors_over_the_limit_roll_back_after_the_failure_limit(fraud: lg.Workspace) -> None:
    d = _canary(fraud, policy={"failure_limit": 2})
    assert d.rollout is not None
    t0 = d.rollout.started_at
    _traffic(fraud, t0 + 30_000, canary={"errors": 40})
    first = fraud.rollouts.analyze("fraud-api", now=t0 + 60_000)
    assert first is not None
    assert (first.action, first.verdict.outcome) == ("hold", "fail")
    assert fraud.deployments.get("fraud-api").rollout.failures == 1  # type: ignore[union-attr]
    _traffic(fraud, t0 + 90_000, canary={"errors": 40})
    second = fraud.rollouts.analyze("fraud-api", now=t0 + 120_000)
    assert second is not None
    assert second.action == "rollback"
    failed = [c.name for c in second.verdict.checks if c.passed is False]
    assert failed == ["error_rate"]
    after = fraud.deployments.get("fraud-api")
    assert (after.rollout, [(r.role, r.weight) for r in after.routes]) == (None, [("primary", 1.0)])
    assert fraud.models.get("models:/fraud@champion").version == 1
    assert _events(fraud) == ["started", "analysis", "analysis", "rolled_back"]


def test_shifted_scores_roll_back_a_healthy_canary(fraud: lg.Workspace) -> None:
    d = _canary(fraud, policy={"failure_limit": 1})
    assert d.rollout is not None
    t0 = d.rollout.started_at
    _traffic(fraud, t0 + 30_000, canary={"scores": np.random.default_rng(1).beta(6, 6, 400)})
    decision = fraud.rollouts.analyze("fraud-api", now=t0 + 60_000)
    assert decision is not None
    assert decision.action == "rollback"
    checks = {c.name: c.passed for c in decision.verdict.checks}
    assert checks == {"error_rate": True, "p99_latency_ms": True, "score_psi": False}


def test_a_slow_canary_fails_on_p99_latency(fraud: lg.Workspace) -> None:
    d = _canary(fraud, policy={"failure_limit": 1})
    assert d.rollout is not None
    _traffic(fraud, d.rollout.started_at + 30_000, canary={"ms": 80.0})
    decision = fraud.rollouts.analyze("fraud-api", now=d.rollout.started_at + 60_000)
    assert decision is not None
    assert [c.name for c in decision.verdict.checks if c.passed is False] == ["p99_latency_ms"]


def test_too_little_traffic_holds_without_counting_a_failure(fraud: lg.Workspace) -> None:
    d = _canary(fraud)
    assert d.rollout is not None
    _traffic(fraud, d.rollout.started_at + 30_000, n=20, canary={"errors": 20})
    decision = fraud.rollouts.analyze("fraud-api", now=d.rollout.started_at + 60_000)
    assert decision is not None
    assert (decision.action, decision.verdict.outcome) == ("hold", "inconclusive")
    assert "too little traffic" in decision.verdict.reason
    rollout = fraud.deployments.get("fraud-api").rollout
    assert rollout is not None
    assert (rollout.failures, rollout.analyses, rollout.step) == (0, 1, 0)


def test_a_canary_no_server_answers_for_fails_instead_of_holding_forever(fraud: lg.Workspace) -> None:
    d = _canary(fraud, policy={"failure_limit": 1})
    assert d.rollout is not None
    stable = _rows(1, "primary", requests=400, ts=d.rollout.started_at + 30_000)
    fraud.rollouts.record_stats([stable])  # every server failed to load the candidate
    decision = fraud.rollouts.analyze("fraud-api", now=d.rollout.started_at + 60_000)
    assert decision is not None
    assert (decision.action, decision.verdict.outcome) == ("rollback", "fail")
    assert "the canary answered no requests while the stable version answered 400" in decision.verdict.reason


def test_a_promotion_gate_that_refuses_rolls_the_canary_back(fraud: lg.Workspace) -> None:
    class NeedsApproval:
        def before_alias_move(self, move: AliasMove) -> None:
            if move.alias == "champion":
                raise lg.ConflictError("champion moves need an approval (2 of 2 missing)")

    fraud.models.add_alias_hook(NeedsApproval())
    d = _canary(fraud, steps=(50, 100))
    assert d.rollout is not None
    _traffic(fraud, d.rollout.started_at + 30_000)
    decision = fraud.rollouts.analyze("fraud-api", now=d.rollout.started_at + 60_000)
    assert decision is not None
    assert decision.action == "promote"
    assert fraud.models.get("models:/fraud@champion").version == 1
    assert fraud.deployments.get("fraud-api").rollout is None
    last = fraud.rollouts.status("fraud-api").events[0]
    assert last["event"] == "rolled_back"
    assert "promotion refused: champion moves need an approval" in last["reason"]


def test_promoting_a_pinned_deployment_pins_the_candidate(fraud: lg.Workspace) -> None:
    fraud.deployments.create("pinned", "models:/fraud/1")
    fraud.rollouts.split("pinned", "models:/fraud/3", percent=25)
    d = fraud.rollouts.promote("pinned", reason="challenger won on labels")
    assert [(r.model, r.role, r.weight) for r in d.routes] == [("models:/fraud/3", "primary", 1.0)]
    assert fraud.models.get("models:/fraud@champion").version == 1  # another deployment's alias: untouched
    event = fraud.audit.events(object_kind="deployment", object_id="pinned", limit=1)[0]
    assert (event.action, event.details["reason"]) == ("deployment.rollout.promoted", "challenger won on labels")


def test_shadow_and_manual_rollback(fraud: lg.Workspace) -> None:
    d = fraud.rollouts.shadow("fraud-api", "models:/fraud/4")
    assert [(r.role, r.weight) for r in d.routes] == [("primary", 1.0), ("shadow", 0.0)]
    back = fraud.rollouts.rollback("fraud-api", reason="seen enough")
    assert [(r.role, r.weight) for r in back.routes] == [("primary", 1.0)]
    assert _events(fraud) == ["started", "rolled_back"]


def test_status_reports_each_arm_and_shadow_agreement(fraud: lg.Workspace) -> None:
    d = fraud.rollouts.shadow("fraud-api", "models:/fraud/4")
    now = d.updated_at + 1000
    stable = _rows(1, "primary", requests=100, ts=now)
    shadow = _rows(4, "shadow", requests=100, ms=200.0, ts=now)
    shadow["stats"]["pairs"] = {"pairs": 100, "agree": 90, "sx": 10.0, "sy": 10.0, "sxx": 1.5, "syy": 1.5, "sxy": 1.4}
    fraud.rollouts.record_stats([stable, shadow])
    report = fraud.rollouts.status("fraud-api", now=now + 1000)
    arms = {a["role"]: a for a in report.arms}
    assert arms["primary"]["requests"] == 100
    assert arms["shadow"]["agreement"] == pytest.approx(0.9)
    assert arms["shadow"]["score_correlation"] == pytest.approx(0.8)
    assert 150 < arms["shadow"]["p50_ms"] < 250
    assert report.to_dict()["rollout"]["strategy"] == "shadow"


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda ws: _canary(ws, steps=(10, 50)), lg.InvalidInputError, "must end at 100"),
        (lambda ws: _canary(ws, steps=(50, 10, 100)), lg.InvalidInputError, "must rise"),
        (lambda ws: _canary(ws, steps=(100,)), lg.InvalidInputError, "everything to the candidate at once"),
        (lambda ws: _canary(ws, interval="200ms"), lg.InvalidInputError, "at least 1s"),
        (lambda ws: _canary(ws, policy={"max_psy": 1}), lg.InvalidInputError, r"unknown analysis setting\(s\) max_psy"),
        (lambda ws: ws.rollouts.split("fraud-api", "models:/fraud/2", percent=100), lg.InvalidInputError, "between 0"),
        (lambda ws: ws.rollouts.canary("fraud-api", "models:/fraud/9"), lg.NotFoundError, "version 9"),
        (lambda ws: ws.rollouts.canary("nope", "models:/fraud/2"), lg.NotFoundError, "deployment 'nope'"),
        (lambda ws: ws.rollouts.canary("fraud-api", "models:/fraud/1"), lg.InvalidInputError, "already serves"),
        (lambda ws: ws.rollouts.rollback("fraud-api"), lg.ConflictError, "no rollout to roll back"),
        (lambda ws: ws.rollouts.promote("fraud-api"), lg.ConflictError, "has no rollout"),
    ],
)
def test_bad_rollouts_are_refused_and_change_nothing(
    fraud: lg.Workspace, call: Any, error: type[Exception], message: str
) -> None:
    before = fraud.deployments.get("fraud-api")
    with pytest.raises(error, match=message):
        call(fraud)
    assert fraud.deployments.get("fraud-api") == before


def test_a_second_rollout_or_a_model_change_during_one_is_a_conflict(fraud: lg.Workspace) -> None:
    _canary(fraud)
    before = fraud.deployments.get("fraud-api")
    with pytest.raises(lg.ConflictError, match="already has a canary of models:/fraud/2; promote or roll it back"):
        fraud.rollouts.shadow("fraud-api", "models:/fraud/3")
    with pytest.raises(lg.ConflictError, match="promote or roll it back first"):
        fraud.deployments.update("fraud-api", model="models:/fraud/3")
    assert fraud.deployments.get("fraud-api") == before


def test_one_analysis_lease_at_a_time(fraud: lg.Workspace) -> None:
    assert fraud.rollouts.take_analysis_lease("server-a", ttl_ms=10_000)
    assert not fraud.rollouts.take_analysis_lease("server-b", ttl_ms=10_000)
    assert fraud.rollouts.take_analysis_lease("server-a", ttl_ms=10_000)  # renewal
    fraud.rollouts.release_analysis_lease("server-a")
    assert fraud.rollouts.take_analysis_lease("server-b", ttl_ms=10_000)

"""Rollouts under real traffic through ``lockgate serve``: the canary analysis rolls back a
failing candidate and a healthy one with shifted scores, promotes a good one (moving the
alias), decides once with two worker processes; a slow shadow leaves the stable version's
latency alone; a champion-challenger split is sticky."""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sklearn.ensemble import GradientBoostingClassifier

import lockgate as lg
from tests.serving.conftest import FEATURES, Server, training_frame
from tests.serving.rollout_models import Flaky, Shifted, Sleepy

INTERVAL_S = 2.0
POLICY = {"min_requests": 40, "failure_limit": 1}


@pytest.fixture
def candidates(served_workspace: Path) -> dict[str, str]:
    """Candidates for ``clf-api`` (champion = v1; v2 is an identical retrain): a flaky one, a
    shifted one and a slow one, by name → model URI."""
    x, y = training_frame()
    inner = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(x.to_numpy(), y)
    found = {"good": "models:/clf/2"}
    with lg.Workspace.open(served_workspace) as ws:
        for name, model in (("flaky", Flaky), ("shifted", Shifted), ("sleepy", Sleepy)):
            found[name] = ws.models.register(model(inner, FEATURES), name="clf", input_example=x.head(5)).uri
    return found


class Traffic:
    """Sequential requests of one-row records against ``clf-api`` on a thread, until stopped."""

    def __init__(self, server: Server, headers: Callable[[int], dict[str, str]] | None = None) -> None:
        self.server = server
        self.headers = headers or (lambda _i: {})
        rows = training_frame(rows=200, seed=3)[0].to_dict("records")
        self.bodies = [{"records": [r]} for r in rows]
        self.answers: list[tuple[int, float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            started = time.perf_counter()
            answer = self.server.post("/v1/endpoints/clf-api/predict", self.bodies[i % 200], self.headers(i))
            self.answers.append((answer.status, time.perf_counter() - started, answer.json()))
            i += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def _until_over(home: Path, timeout: float = 40.0) -> lg.Deployment:
    deadline = time.monotonic() + timeout
    with lg.Workspace.open(home) as ws:
        while time.monotonic() < deadline:
            deployment = ws.deployments.get("clf-api")
            if deployment.rollout is None:
                return deployment
            time.sleep(0.25)
        pytest.fail(f"the rollout did not end within {timeout} s: {ws.rollouts.status('clf-api').to_dict()}")


def _canary(home: Path, candidate: str) -> Iterator[dict[str, Any]]:
    with lg.Workspace.open(home) as ws:
        ws.rollouts.canary("clf-api", candidate, steps=(20, 50, 100), interval=f"{INTERVAL_S}s", policy=POLICY)
    _until_over(home)
    with lg.Workspace.open(home) as ws:
        events = list(reversed(ws.rollouts.status("clf-api").events))
    start = max(i for i, e in enumerate(events) if e["event"] == "started")
    yield from events[start:]


def test_the_canary_analysis_rolls_back_bad_candidates_and_promotes_a_good_one(
    server_factory: Callable[..., Server], served_workspace: Path, candidates: dict[str, str]
) -> None:
    server = server_factory(workers=2)
    with Traffic(server) as traffic:
        flaky = list(_canary(served_workspace, candidates["flaky"]))
        shifted = list(_canary(served_workspace, candidates["shifted"]))
        good = list(_canary(served_workspace, candidates["good"]))
        time.sleep(1.0)  # both workers poll the promotion
        mark = len(traffic.answers)
        time.sleep(0.5)

    # A candidate failing ~10% of its calls: rolled back on its error rate, at the first step.
    assert [e["event"] for e in flaky] == ["started", "analysis", "rolled_back"]
    failed = [c["name"] for c in flaky[1]["verdict"]["checks"] if c["passed"] is False]
    assert failed == ["error_rate"]
    errors = [a for a in traffic.answers if a[0] == 500]
    assert errors, "the flaky candidate's failures reached callers as 500s"
    assert all(a[2]["code"] == "model_error" for a in errors)

    # Healthy but its scores moved: rolled back on PSI alone.
    assert [e["event"] for e in shifted] == ["started", "analysis", "rolled_back"]
    checks = {c["name"]: c["passed"] for c in shifted[1]["verdict"]["checks"]}
    assert checks == {"error_rate": True, "p99_latency_ms": True, "score_psi": False}

    # The good one passes 20% and 50% and is promoted: the alias moves to it.
    assert [e["event"] for e in good if e["event"] != "analysis" or e["action"] != "hold"] == [
        "started",
        "analysis",
        "advanced",
        "analysis",
        "promoted",
    ]
    with lg.Workspace.open(served_workspace) as ws:
        assert ws.models.get("models:/clf@champion").version == 2
        assert ws.audit.verify().ok
        moved = ws.audit.events(object_kind="model", object_id="clf", limit=1)[0]
        assert (moved.action, moved.details["to"]) == ("alias.moved", 2)

    # Two worker processes, one analyst: analyses of a step are an interval apart, never twice.
    analyses = [e["at"] for e in good if e["event"] == "analysis"]
    assert all(b - a >= INTERVAL_S * 1000 * 0.9 for a, b in itertools.pairwise(analyses))
    served_by = {a[2].get("model_version") for a in traffic.answers[mark:] if a[0] == 200}
    assert served_by == {2}, "after the promotion every request is answered by the new champion"


def test_a_slow_shadow_leaves_the_stable_latency_alone_and_both_answers_are_logged(
    server_factory: Callable[..., Server], served_workspace: Path, candidates: dict[str, str]
) -> None:
    server = server_factory()
    with Traffic(server) as before:
        time.sleep(2.0)
    with lg.Workspace.open(served_workspace) as ws:
        ws.rollouts.shadow("clf-api", candidates["sleepy"])
    time.sleep(1.0)  # the server polls every 0.2 s
    with Traffic(server) as during:
        time.sleep(3.0)
    time.sleep(1.5)  # the shadows finish, and the statistics are flushed every second

    p50_before = statistics.median(t for _s, t, _a in before.answers)
    p50_during = statistics.median(t for _s, t, _a in during.answers)
    assert all(s == 200 for s, _t, _a in during.answers)
    assert p50_during < max(p50_before * 1.5, p50_before + 0.002), (p50_before, p50_during)
    assert p50_during < 0.1  # nobody waited for the 200 ms shadow

    with lg.Workspace.open(served_workspace) as ws:
        arms = {a["role"]: a for a in ws.rollouts.status("clf-api").arms}
    assert arms["shadow"]["compared"] > 0
    assert arms["shadow"]["agreement"] == 1.0
    assert arms["shadow"]["score_correlation"] == pytest.approx(1.0)
    assert arms["shadow"]["p50_ms"] > 150

    server.stop()  # the prediction log is written out at shutdown
    log = served_workspace / "predictions"
    pairs = duckdb.sql(
        f"""SELECT p.request_id, p.score, s.score AS shadow_score, s.model_version AS shadow_version
            FROM read_parquet('{log}/**/*.parquet', hive_partitioning = true, union_by_name = true) p
            JOIN read_parquet('{log}/**/*.parquet', hive_partitioning = true, union_by_name = true) s
              ON p.request_id = s.request_id AND p.role = 'primary' AND s.role = 'shadow'"""
    ).fetchall()
    assert pairs, "the primary's and the shadow's answers share their request ids in the log"
    assert all(abs(p[1] - p[2]) < 1e-5 for p in pairs)  # ONNX float32 against scikit-learn float64


def test_a_champion_challenger_split_is_sticky_per_key(
    server_factory: Callable[..., Server], served_workspace: Path
) -> None:
    with lg.Workspace.open(served_workspace) as ws:
        ws.rollouts.split("clf-api", "models:/clf/2", percent=30)
    server = server_factory()
    body = {"records": training_frame(rows=1)[0].to_dict("records")}
    by_key: dict[str, set[int]] = {}
    for i in range(120):
        key = f"card-{i % 40}"
        answer = server.post("/v1/endpoints/clf-api/predict", body, {"x-route-key": key}).json()
        by_key.setdefault(key, set()).add(answer["model_version"])
        assert answer.get("role", "primary") == ("challenger" if answer["model_version"] == 2 else "primary")
    assert all(len(v) == 1 for v in by_key.values()), "one key always lands on one arm"
    challengers = sum(1 for v in by_key.values() if v == {2})
    assert 4 <= challengers <= 22  # about 30% of 40 keys

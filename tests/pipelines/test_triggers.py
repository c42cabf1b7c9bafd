"""Continuous-training triggers on every metadata backend: cron ticks, new data, manual and
programmatic firings, cooldown and de-duplication, the scheduler lease, and the runs they start.

Time is injected (``now=``), so schedules a day apart are evaluated in milliseconds.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import lockgate as lg
from lockgate.lineage import Node
from lockgate.pipelines import DataRef, Scheduler, TriggerService
from lockgate.pipelines._firing import execute_fire
from lockgate.store import TriggerRepository

FLOW = """\
from lockgate import pipeline, step


@step
def double(n: int) -> int:
    if n < 0:
        raise ValueError("n must not be negative")
    return 2 * n


@pipeline
def flow(n: int = 1):
    return double(n)
"""

DAY = 86_400_000
MINUTE = 60_000


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> int:
    """Epoch milliseconds of 2026-01-{1 + day} hour:minute:second UTC."""
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=hour, minutes=minute, seconds=second)
    return int(moment.timestamp() * 1000)


@pytest.fixture
def flow_file(tmp_path: Path) -> Path:
    path = tmp_path / "project" / "flow.py"
    path.parent.mkdir()
    path.write_text(FLOW)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "project" / "data"
    path.mkdir(parents=True)
    (path / "day=1.csv").write_text("amount\n1.0\n")
    return path


def scheduler(ws: lg.Workspace) -> Scheduler:
    return Scheduler(ws, executor="inline", isolate=False)


# -- cron ------------------------------------------------------------------------------------


def test_cron_fires_once_per_due_tick_and_its_run_carries_the_reason(backend_ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(backend_ws)
    triggers.add("nightly", pipeline=str(flow_file), cron="0 2 * * *", params={"n": 4}, now=at(0, 1, 30))
    s = scheduler(backend_ws)
    assert s.evaluate_once(at(0, 1, 59)).fired == []
    first = s.evaluate_once(at(0, 2, 0, 5))
    assert [(f.trigger, f.reason, f.status) for f in first.fired] == [("nightly", "schedule", "SUCCEEDED")]
    assert first.fired[0].details["tick"].startswith("2026-01-01T02:00:00")
    assert s.evaluate_once(at(0, 2, 30)).fired == []  # the same tick never fires twice
    assert s.evaluate_once(at(0, 23, 59)).fired == []
    second = s.evaluate_once(at(1, 2, 0, 1))
    assert len(second.fired) == 1
    run = backend_ws.runs.get(second.fired[0].run_id or "")
    assert run.tags["lockgate.trigger"] == "nightly"
    assert run.tags["lockgate.trigger_reason"] == "schedule"
    assert run.params["n"] == "4"
    assert [f.status for f in triggers.history("nightly")] == ["SUCCEEDED", "SUCCEEDED"]


def test_after_downtime_a_missed_schedule_fires_once_not_once_per_tick(
    backend_ws: lg.Workspace, flow_file: Path
) -> None:
    TriggerService(backend_ws).add("hourly", pipeline=str(flow_file), cron="0 * * * *", now=at(0, 0, 30))
    s = scheduler(backend_ws)
    evaluation = s.evaluate_once(at(5, 3, 10), run=False)  # five days down: 123 ticks missed
    assert len(evaluation.fired) == 1
    assert evaluation.fired[0].details["missed_ticks"] == 122
    assert evaluation.fired[0].details["tick"].startswith("2026-01-06T03:00:00")
    assert s.evaluate_once(at(5, 3, 59), run=False).fired == []


def test_cooldown_skips_ticks_and_a_skipped_tick_never_fires_late(backend_ws: lg.Workspace, flow_file: Path) -> None:
    TriggerService(backend_ws).add(
        "often", pipeline=str(flow_file), cron="*/10 * * * *", cooldown="25m", now=at(0, 0, 5)
    )
    s = scheduler(backend_ws)
    assert len(s.evaluate_once(at(0, 0, 10, 1)).fired) == 1
    for minute in (20, 30):
        skipped = s.evaluate_once(at(0, 0, minute, 1))
        assert skipped.fired == []
        assert [f.skip_reason for f in skipped.skipped] == ["cooldown"]
        assert skipped.skipped[0].note == "cooling down until 2026-01-01T00:35:01.000+00:00"
    assert s.evaluate_once(at(0, 0, 36)).skipped == []  # the tick at :30 is gone, not deferred
    assert len(s.evaluate_once(at(0, 0, 40, 1)).fired) == 1


# -- new data --------------------------------------------------------------------------------


def test_new_data_fires_once_per_new_version_and_not_for_unchanged_content(
    backend_ws: lg.Workspace, flow_file: Path, folder: Path
) -> None:
    triggers = TriggerService(backend_ws)
    trigger = triggers.add("fresh-data", pipeline=str(flow_file), watch=str(folder))
    assert trigger.kind == "data"
    s = scheduler(backend_ws)
    assert s.evaluate_once().fired == []  # the files present when it was added count as seen
    (folder / "day=2.csv").write_text("amount\n2.0\n")
    fired = s.evaluate_once().fired
    assert [(f.reason, f.details["new_files"]) for f in fired] == [("new_data", ["day=2.csv"])]
    assert fired[0].details["content_hash"] == DataRef(str(folder)).content_hash()
    assert s.evaluate_once().fired == []
    later = time.time() + 5
    os.utime(folder / "day=2.csv", (later, later))  # touched, same content
    (folder / ".day=3.csv.tmp").write_text("half-written")  # dot-files are not data yet
    assert s.evaluate_once().fired == []
    (folder / "day=2.csv").write_text("amount\n2.5\n")  # a changed partition is a new version
    (folder / "part").mkdir()
    (folder / "part" / "x.parquet").write_bytes(b"PAR1")
    again = s.evaluate_once().fired
    assert [f.details["new_files"] for f in again] == [["day=2.csv", "part/x.parquet"]]
    # The data version that fired the trigger is upstream of the run it started.
    run_id = again[0].run_id or ""
    graph = backend_ws.lineage.walk(Node("run", run_id), direction="upstream")
    assert Node("dataset", f"{folder}@{again[0].details['content_hash']}") in graph.nodes


def test_new_data_during_the_cooldown_fires_once_when_it_ends(ws: lg.Workspace, flow_file: Path, folder: Path) -> None:
    TriggerService(ws).add("fresh", pipeline=str(flow_file), watch=str(folder), cooldown="1h", now=at(0, 0))
    s = scheduler(ws)
    (folder / "day=2.csv").write_text("2")
    assert len(s.evaluate_once(at(0, 1), run=False).fired) == 1
    (folder / "day=3.csv").write_text("3")
    folded = s.evaluate_once(at(0, 1, 30))  # folded into the waiting firing, which then runs and reads it
    assert [f.skip_reason for f in folded.skipped] == ["waiting"]
    assert len(folded.ran) == 1
    (folder / "day=4.csv").write_text("4")
    for minute in (40, 50):  # seen during the cooldown, and kept for later
        assert [f.skip_reason for f in s.evaluate_once(at(0, 1, minute), run=False).skipped] == ["cooldown"]
    fired = s.evaluate_once(at(0, 2, 1), run=False).fired
    assert [f.details["new_files"] for f in fired] == [["day=4.csv"]]
    assert s.evaluate_once(at(0, 2, 2), run=False).skipped == []


# -- manual and programmatic firings ---------------------------------------------------------


def test_fire_records_reason_details_and_actor_on_the_firing_the_run_and_the_audit_log(
    backend_ws: lg.Workspace, flow_file: Path
) -> None:
    TriggerService(backend_ws).add("retrain", pipeline=str(flow_file), params={"n": 2})
    monitor = TriggerService(backend_ws, actor="service:drift-monitor")
    fired = monitor.fire("retrain", "drift", {"feature": "amount", "psi": 0.31})
    assert (fired.status, fired.actor) == ("PENDING", "service:drift-monitor")
    by_hand = TriggerService(backend_ws).fire("retrain")
    assert by_hand.skip_reason == "waiting"  # folded into the firing still waiting to run
    evaluation = scheduler(backend_ws).evaluate_once()
    assert [f.id for f in evaluation.ran] == [fired.id]
    done = evaluation.ran[0]
    run = backend_ws.runs.get(done.run_id or "")
    assert run.tags["lockgate.trigger_reason"] == "drift"
    assert run.tags["lockgate.trigger_actor"] == "service:drift-monitor"
    assert run.tags["lockgate.trigger_firing"] == str(fired.id)
    manual = TriggerService(backend_ws).fire("retrain", details={"ticket": "ML-42"})
    done = TriggerService(backend_ws).run(manual, executor="inline")
    assert (done.reason, done.actor, done.details) == ("manual", backend_ws.settings.actor, {"ticket": "ML-42"})
    assert backend_ws.runs.get(done.run_id or "").tags["lockgate.trigger_reason"] == "manual"
    events = backend_ws.audit.events(object_kind="trigger", object_id="retrain")
    assert [(e.action, e.actor) for e in reversed(events)] == [
        ("trigger.added", backend_ws.settings.actor),
        ("trigger.fired", "service:drift-monitor"),
        ("trigger.fired", backend_ws.settings.actor),
    ]
    assert backend_ws.audit.verify().ok


def test_dedup_key_fires_an_event_once_and_force_overrides(ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(ws)
    triggers.add("retrain", pipeline=str(flow_file), cooldown="1d")
    first = triggers.fire("retrain", "drift", dedup_key="drift:2026-01-01", now=at(0, 1))
    execute_fire(ws, _claim(ws, first.id), executor="inline")
    again = triggers.fire("retrain", "drift", dedup_key="drift:2026-01-01", now=at(3, 1))
    assert again.skip_reason == "duplicate"
    assert again.note == f"this event fired it already (firing {first.id})"
    assert triggers.fire("retrain", "drift", now=at(0, 2)).skip_reason == "cooldown"
    forced = triggers.fire("retrain", "drift", dedup_key="drift:2026-01-01", force=True, now=at(0, 2))
    assert forced.status == "PENDING"


def test_a_failing_pipeline_fails_its_firing_and_the_scheduler_goes_on(ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(ws)
    triggers.add("broken", pipeline=str(flow_file), params={"n": -1})
    triggers.add("fine", pipeline=str(flow_file))
    triggers.fire("broken")
    triggers.fire("fine")
    ran = scheduler(ws).evaluate_once().ran
    assert [(f.trigger, f.status) for f in ran] == [("broken", "FAILED"), ("fine", "SUCCEEDED")]
    assert "step 'double' of pipeline 'flow' failed" in (ran[0].note or "")
    assert ws.runs.get(ran[0].run_id or "").status is lg.RunStatus.FAILED


def test_a_firing_runs_in_a_worker_process_with_the_code_on_disk(ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(ws)
    triggers.add("retrain", pipeline=str(flow_file), params={"n": 5})
    flow_file.write_text(FLOW.replace("2 * n", "3 * n"))  # edited after the trigger was added
    triggers.fire("retrain")
    ran = Scheduler(ws, executor="inline").evaluate_once().ran
    assert [f.status for f in ran] == ["SUCCEEDED"]
    assert ws.runs.get(ran[0].run_id or "").tags["lockgate.trigger"] == "retrain"
    artifacts = ws.runs.artifacts(ran[0].run_id or "")
    assert any(a["path"] == "pipeline.json" for a in artifacts)
    children = [r for r in ws.runs.list(include_children=True, limit=None) if r.parent_id == ran[0].run_id]
    output = next(a for a in ws.runs.artifacts(children[0].id) if a["path"].startswith("outputs/"))
    assert ws.artifacts.get_bytes(output["sha256"]) == b"15"


# -- records ---------------------------------------------------------------------------------


def test_bad_input_is_refused_with_one_sentence(ws: lg.Workspace, flow_file: Path, tmp_path: Path) -> None:
    triggers = TriggerService(ws)
    triggers.add("nightly", pipeline=str(flow_file), cron="0 2 * * *")
    with pytest.raises(lg.InvalidInputError, match=r"cron expression '0 25 \* \* \*' does not parse"):
        triggers.add("bad", pipeline=str(flow_file), cron="0 25 * * *")
    with pytest.raises(lg.ConflictError, match="trigger 'nightly' already exists"):
        triggers.add("nightly", pipeline=str(flow_file))
    with pytest.raises(lg.NotFoundError, match=r"pipeline file .*missing\.py does not exist"):
        triggers.add("bad", pipeline=str(tmp_path / "missing.py"))
    with pytest.raises(lg.NotFoundError, match=r"watch folder .*nowhere does not exist"):
        triggers.add("bad", pipeline=str(flow_file), watch=tmp_path / "nowhere")
    with pytest.raises(lg.InvalidInputError, match="takes --cron or --watch, not both"):
        triggers.add("bad", pipeline=str(flow_file), cron="0 2 * * *", watch=tmp_path)
    with pytest.raises(lg.InvalidInputError, match="pipeline 'flow' has no parameter 'depth'"):
        triggers.add("bad", pipeline=str(flow_file), params={"depth": 3})
    with pytest.raises(lg.InvalidInputError, match="parameter 'api_token' looks like a credential"):
        triggers.add("bad", pipeline=str(flow_file), params={"api_token": "s3cr3t"})
    with pytest.raises(lg.InvalidInputError, match="duration '1 fortnight' does not parse"):
        triggers.add("bad", pipeline=str(flow_file), cooldown="1 fortnight")
    with pytest.raises(lg.InvalidInputError, match="trigger name 'no/slash' is not valid"):
        triggers.add("no/slash", pipeline=str(flow_file))
    with pytest.raises(lg.NotFoundError, match="trigger 'nope' does not exist; see: lockgate triggers list"):
        triggers.fire("nope")
    with pytest.raises(lg.NotFoundError, match="trigger 'nope' does not exist"):
        triggers.remove("nope")
    assert [t.name for t in triggers.list()] == ["nightly"]


def test_disabled_triggers_do_not_fire_and_enabling_starts_afresh(backend_ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(backend_ws)
    triggers.add("nightly", pipeline=str(flow_file), cron="0 2 * * *", enabled=False, now=at(0, 0))
    s = scheduler(backend_ws)
    assert s.evaluate_once(at(3, 3), run=False).fired == []
    assert triggers.fire("nightly", now=at(3, 3)).skip_reason == "disabled"
    triggers.set_enabled("nightly", True, now=at(3, 4))
    assert s.evaluate_once(at(3, 5), run=False).fired == []  # the ticks while it was off are not owed
    assert len(s.evaluate_once(at(4, 2, 1), run=False).fired) == 1
    assert triggers.get("nightly").next_fire_at(at(4, 3)) == at(5, 2)


def test_removing_a_trigger_removes_its_history_and_is_audited(backend_ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(backend_ws)
    triggers.add("retrain", pipeline=str(flow_file))
    triggers.fire("retrain")
    triggers.remove("retrain")
    assert triggers.list() == []
    assert triggers.history() == []
    assert scheduler(backend_ws).evaluate_once().ran == []
    actions = [e.action for e in backend_ws.audit.events(object_kind="trigger", object_id="retrain")]
    assert actions == ["trigger.removed", "trigger.fired", "trigger.added"]


# -- the lease and the loop ------------------------------------------------------------------


def test_only_one_scheduler_holds_the_lease_and_another_takes_it_when_it_expires(backend_ws: lg.Workspace) -> None:
    first = Scheduler(backend_ws, lease_ttl_s=60, holder="scheduler:a")
    second = Scheduler(backend_ws, lease_ttl_s=60, holder="scheduler:b")
    t0 = at(0, 0)
    assert first.acquire(now=t0)
    assert not second.acquire(now=t0 + 30_000)
    assert first.acquire(now=t0 + 50_000)  # renewed: it now lasts until t0 + 110 s
    assert not second.acquire(now=t0 + 100_000)
    lease = second.lease(now=t0 + 100_000)
    assert lease is not None
    assert (lease.holder, lease.acquired_at, lease.expires_at) == ("scheduler:a", t0, t0 + 110_000)
    assert second.acquire(now=t0 + 110_000)  # the first stopped renewing
    assert not first.acquire(now=t0 + 111_000)
    second.release()
    assert second.lease(now=t0 + 112_000) is None
    assert first.acquire(now=t0 + 112_000)


def test_schedulers_racing_for_the_lease_get_exactly_one_holder(backend_ws: lg.Workspace) -> None:
    start = threading.Barrier(4)
    results: list[bool] = []

    def grab(i: int) -> None:
        contender = Scheduler(backend_ws, holder=f"scheduler:{i}")
        start.wait()
        results.append(contender.acquire(now=at(0, 0)))

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False, False, False, True]


def test_run_loop_fires_reaps_orphans_and_stops_and_releases_on_request(ws: lg.Workspace, flow_file: Path) -> None:
    triggers = TriggerService(ws)
    triggers.add("retrain", pipeline=str(flow_file))
    orphan = triggers.fire("retrain")
    assert orphan.id is not None
    _claim(ws, orphan.id, runner="scheduler:gone")  # a scheduler died while running it
    queued = triggers.fire("retrain", force=True)
    events: list[str] = []
    s = Scheduler(ws, executor="inline", isolate=False, poll_s=0.05, on_event=events.append)
    waiting = Scheduler(ws, poll_s=0.05)
    stop = threading.Event()
    loop = threading.Thread(target=s.run, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 20
        while not any(e.startswith(f"firing {queued.id} of retrain: SUCCEEDED") for e in events):
            assert time.monotonic() < deadline, events
            time.sleep(0.05)
        assert not waiting.acquire()
    finally:
        stop.set()
        loop.join(timeout=20)
    assert not loop.is_alive()
    assert events[-1] == f"scheduler {s.holder} stopped"
    assert s.lease() is None
    assert waiting.acquire()
    reaped = next(f for f in triggers.history("retrain") if f.id == orphan.id)
    assert reaped.status == "FAILED"
    assert "the scheduler running it (scheduler:gone) stopped" in (reaped.note or "")


def test_shutdown_interrupts_a_running_firing_and_queues_it_again(ws: lg.Workspace, tmp_path: Path) -> None:
    started = tmp_path / "started"
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import pathlib, time\n"
        "from lockgate import pipeline, step\n"
        "@step\n"
        "def wait(marker: str) -> int:\n"
        "    pathlib.Path(marker).touch()\n"
        "    time.sleep(60)\n"
        "    return 1\n"
        "@pipeline\n"
        "def slow(marker: str = ''):\n"
        "    return wait(marker)\n"
    )
    triggers = TriggerService(ws)
    triggers.add("slow", pipeline=str(slow), params={"marker": str(started)})
    fired = triggers.fire("slow")
    s = Scheduler(ws, executor="inline", poll_s=0.05)
    stop = threading.Event()
    loop = threading.Thread(target=s.run, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=30)
    assert not loop.is_alive()
    [again] = triggers.history("slow")
    assert (again.id, again.status, again.runner) == (fired.id, "PENDING", None)
    assert again.note == "interrupted by a scheduler shutdown; waiting to run again"
    [killed] = ws.runs.list(experiment="slow", limit=None)
    assert killed.status is lg.RunStatus.KILLED
    assert killed.tags["lockgate.trigger_firing"] == str(fired.id)


def _claim(ws: lg.Workspace, fire_id: int | None, *, runner: str = "test") -> int:
    assert fire_id is not None
    with ws.db.write() as conn:
        assert TriggerRepository().claim_fire(conn, fire_id, runner=runner, now=at(0, 0))
    return fire_id

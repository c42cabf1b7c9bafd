"""The scheduler: one loop that notices due schedules and new data, records the firings, and
runs every waiting firing (its own, and those recorded by ``fire``: people, monitors).

Only the holder of the ``scheduler`` lease (a row in the metadata store with a holder id and
an expiry, renewed by a heartbeat thread while it runs) evaluates triggers; a second
scheduler waits until the lease is released or expires. A schedule missed during downtime
fires once, not once per missed tick. Each firing runs in a fresh worker process by default,
so a pipeline always runs the code that is on disk now and cannot take the loop down with it.

>>> import lockgate as lg, tempfile
>>> from lockgate.pipelines import Scheduler
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> scheduler = Scheduler(ws, executor="inline", isolate=False)
>>> scheduler.acquire(), Scheduler(ws).acquire()
(True, False)
>>> scheduler.evaluate_once().fired
[]
>>> scheduler.release()
>>> ws.close()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.clock import now_millis, to_iso
from lockgate.errors import LockgateError, UnavailableError
from lockgate.pipelines._cron import latest_tick, missed_ticks, next_tick
from lockgate.pipelines._firing import TriggerFire, execute_fire, record_fire
from lockgate.pipelines._watch import FolderSnapshot
from lockgate.store import LeaseRepository, TriggerRepository
from lockgate.workspace import Workspace

__all__ = ["LEASE_NAME", "Evaluation", "Lease", "Scheduler"]

LEASE_NAME = "scheduler"
_REPO = TriggerRepository()
_LEASES = LeaseRepository()
_WORKER = "import sys; from lockgate.pipelines._scheduler import worker_main; sys.exit(worker_main(sys.argv[1:]))"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What one evaluation did: firings it recorded, due triggers it skipped (``note`` says
    why), and every firing it ran (its own and those queued by ``fire``), as they ended."""

    at: int
    fired: list[TriggerFire]
    skipped: list[TriggerFire]
    ran: list[TriggerFire]


@dataclass(frozen=True, slots=True)
class Lease:
    holder: str
    acquired_at: int
    expires_at: int

    def to_dict(self) -> dict[str, Any]:
        return {"holder": self.holder, "acquired_at": to_iso(self.acquired_at), "expires_at": to_iso(self.expires_at)}


class Scheduler:
    """Evaluates the triggers of one workspace, once (:meth:`evaluate_once`) or in a loop
    (:meth:`run`) while it holds the scheduler lease.

    Args:
        executor: where pipeline steps run (``local`` or ``inline``).
        poll_s: the longest wait between evaluations (a due schedule wakes it sooner).
        lease_ttl_s: how long the lease lasts without renewal; renewed every third of it.
        isolate: run each firing in a fresh worker process (the default) or in this one.
        clock: milliseconds since the epoch; tests pass their own.
        on_event: called with one line per thing worth telling (fired, skipped, ran, lease).
    """

    def __init__(
        self,
        ws: Workspace,
        *,
        executor: str = "local",
        poll_s: float = 30.0,
        lease_ttl_s: float = 60.0,
        isolate: bool = True,
        holder: str | None = None,
        clock: Callable[[], int] = now_millis,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self._ws = ws
        self.executor = executor
        self.poll_s = poll_s
        self.lease_ttl_s = lease_ttl_s
        self.isolate = isolate
        self.holder = holder or f"scheduler:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._clock = clock
        self._on_event = on_event
        self._actor = ws.settings.actor
        self._notes: dict[str, str] = {}
        self._next_due: int | None = None

    # -- the lease -----------------------------------------------------------------------------

    def acquire(self, *, now: int | None = None) -> bool:
        """Take (or renew) the scheduler lease; False while another scheduler holds it."""
        now = now if now is not None else self._clock()
        with self._ws.db.write() as conn:
            return _LEASES.acquire(conn, LEASE_NAME, holder=self.holder, now=now, ttl_ms=round(self.lease_ttl_s * 1000))

    def release(self) -> None:
        """Give the lease up (when this scheduler holds it), so another can take it at once."""
        with self._ws.db.write() as conn:
            _LEASES.release(conn, LEASE_NAME, holder=self.holder)

    def lease(self, *, now: int | None = None) -> Lease | None:
        """Who holds the lease now, or None when nobody does."""
        now = now if now is not None else self._clock()
        with self._ws.db.read() as conn:
            row = _LEASES.get(conn, LEASE_NAME)
        if row is None or int(row["expires_at"]) <= now:
            return None
        return Lease(row["holder"], int(row["acquired_at"]), int(row["expires_at"]))

    # -- one evaluation ------------------------------------------------------------------------

    def evaluate_once(self, now: int | None = None, *, run: bool = True) -> Evaluation:
        """Fire every due trigger at ``now``, then (with ``run``) run every waiting firing.

        It does not check the lease: :meth:`run` and ``lockgate scheduler run --once`` do.
        """
        return self._evaluate(now if now is not None else self._clock(), run=run, stop=None)

    def _evaluate(self, now: int, *, run: bool, stop: threading.Event | None) -> Evaluation:
        with self._ws.db.read() as conn:
            rows = _REPO.list(conn, enabled_only=True)
        fired: list[TriggerFire] = []
        skipped: list[TriggerFire] = []
        self._next_due = None
        for row in rows:
            if not (row["schedule"] or row["watch"]):
                continue  # manual: fired by people and monitors only
            try:
                fire = self._check_schedule(row, now) if row["schedule"] else self._check_folder(row, now)
            except (LockgateError, OSError, ValueError) as exc:
                self._note(row["name"], f"trigger {row['name']}: cannot evaluate ({exc})")
                continue
            if fire is None:
                continue
            (fired if fire.fired else skipped).append(fire)
            if fire.fired:
                self._event(f"fired {fire.trigger} (firing {fire.id}, {fire.reason})")
            else:
                self._note(fire.trigger, f"skipped {fire.trigger}: {fire.note}")
        ran = self._run_pending(stop) if run else []
        done = {f.id: f for f in ran}
        return Evaluation(now, [done.get(f.id, f) for f in fired], skipped, ran)

    def _check_schedule(self, row: dict[str, Any], now: int) -> TriggerFire | None:
        schedule = str(row["schedule"])
        following = next_tick(schedule, now)
        self._next_due = following if self._next_due is None else min(self._next_due, following)
        due = latest_tick(schedule, now)
        last = int(row["last_tick_at"] if row["last_tick_at"] is not None else row["created_at"])
        if due <= last:
            return None
        missed = missed_ticks(schedule, after=last, until=due) - 1
        with self._ws.db.write() as conn:
            row = _REPO.get(conn, row["name"], lock=True) or {}
            if not row.get("enabled") or (row["last_tick_at"] or 0) >= due:
                return None  # removed, disabled or handled meanwhile
            fire = record_fire(
                conn,
                self._ws.audit,
                row,
                reason="schedule",
                details={"schedule": schedule, "tick": to_iso(due), "missed_ticks": missed},
                actor=self._actor,
                dedup_key=f"schedule:{due}",
                force=False,
                now=now,
            )
            # The tick is handled whether it fired or was skipped: a missed tick never fires late.
            _REPO.update(conn, int(row["id"]), last_tick_at=due)
        return fire

    def _check_folder(self, row: dict[str, Any], now: int) -> TriggerFire | None:
        folder = Path(str(row["watch"]))
        if not folder.is_dir():
            self._note(row["name"], f"trigger {row['name']}: watch folder {folder} is missing")
            return None
        before = FolderSnapshot.from_json(row["watch_state"])
        after = FolderSnapshot.take(folder, previous=before)
        new = after.new_since(before)
        if not new:
            if after.files != before.files or not before.settled:
                with self._ws.db.write() as conn:  # removed or touched files; nothing new to train on
                    _REPO.update(conn, int(row["id"]), watch_state=after.to_json())
            return None
        version = after.content_hash()
        with self._ws.db.write() as conn:
            row = _REPO.get(conn, row["name"], lock=True) or {}
            if not row.get("enabled"):
                return None
            fire = record_fire(
                conn,
                self._ws.audit,
                row,
                reason="new_data",
                details={
                    "watch": str(folder),
                    "content_hash": version,
                    "new_files": new[:20],
                    "new_file_count": len(new),
                },
                actor=self._actor,
                dedup_key=f"data:{version}",
                force=False,
                now=now,
            )
            # Data that arrives during the cooldown is not lost: it fires once the cooldown ends.
            if fire.skip_reason != "cooldown":
                _REPO.update(conn, int(row["id"]), watch_state=after.to_json())
        return fire

    # -- running firings -----------------------------------------------------------------------

    def _run_pending(self, stop: threading.Event | None) -> list[TriggerFire]:
        with self._ws.db.read() as conn:
            pending = [int(r["id"]) for r in _REPO.fires(conn, status="PENDING", newest_first=False)]
        ran: list[TriggerFire] = []
        for fire_id in pending:
            if stop is not None and stop.is_set():
                break
            with self._ws.db.write() as conn:
                if not _REPO.claim_fire(conn, fire_id, runner=self.holder, now=self._clock()):
                    continue  # run by someone else meanwhile
            if self.isolate:
                result = self._run_in_worker(fire_id, stop)
            else:
                result = execute_fire(self._ws, fire_id, executor=self.executor)
            if result is not None:
                ran.append(result)
                outcome = f"run {result.run_id[:8]}" if result.run_id else "no run"
                self._event(f"firing {fire_id} of {result.trigger}: {result.status} ({outcome})")
        return ran

    def _run_in_worker(self, fire_id: int, stop: threading.Event | None) -> TriggerFire | None:
        worker = subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(fire_id), self.executor],
            env={**os.environ, **_settings_env(self._ws)},
            cwd=self._workdir(fire_id),
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its step processes too are stopped with it, never orphaned
        )
        try:
            while worker.poll() is None:
                if stop is not None and stop.wait(0.2):
                    _stop_worker(worker)
                    self._requeue(fire_id)
                    self._event(f"firing {fire_id} interrupted by shutdown; it runs again when a scheduler starts")
                    return None
                if stop is None:
                    worker.wait()
        except BaseException:
            _stop_worker(worker)
            self._requeue(fire_id)
            raise
        with self._ws.db.write() as conn:
            _REPO.update_fire(
                conn,
                fire_id,
                only_status="RUNNING",
                status="FAILED",
                ended_at=self._clock(),
                error=f"its worker process exited with code {worker.returncode} before recording an outcome",
            )
            return TriggerFire.from_row(_REPO.fires(conn, ids=[fire_id])[0])

    def _workdir(self, fire_id: int) -> str | None:
        """Where the firing's trigger was added (when that folder still exists)."""
        with self._ws.db.read() as conn:
            fire = _REPO.fires(conn, ids=[fire_id])[0]
            row = _REPO.get(conn, fire["trigger"])
        workdir = str(row["workdir"]) if row else ""
        return workdir if workdir and Path(workdir).is_dir() else None

    def _requeue(self, fire_id: int) -> None:
        with self._ws.db.write() as conn:
            row = next(iter(_REPO.fires(conn, ids=[fire_id])), None)
            interrupted = row is not None and (
                row["status"] == "RUNNING"
                or (row["status"] == "FAILED" and str(row["error"]).startswith("interrupted"))
            )
            if interrupted:
                _REPO.update_fire(
                    conn,
                    fire_id,
                    status="PENDING",
                    runner=None,
                    started_at=None,
                    ended_at=None,
                    error="interrupted by a scheduler shutdown; waiting to run again",
                )

    def reap(self) -> None:
        """Firings left RUNNING by a scheduler that stopped without finishing them."""
        with self._ws.db.write() as conn:
            for row in _REPO.fires(conn, status="RUNNING"):
                runner = str(row["runner"] or "")
                if runner.startswith("scheduler:") and runner != self.holder:
                    _REPO.update_fire(
                        conn,
                        int(row["id"]),
                        only_status="RUNNING",
                        status="FAILED",
                        ended_at=self._clock(),
                        error=f"the scheduler running it ({runner}) stopped; fire it again: "
                        f"lockgate triggers fire {row['trigger']}",
                    )

    # -- the loop ------------------------------------------------------------------------------

    def run_once(self) -> Evaluation | None:
        """Take the lease, evaluate once (running what fires), give the lease back; None when
        another scheduler holds it (it evaluates the triggers, so there is nothing to do)."""
        if not self.acquire():
            return None
        heartbeat = _Heartbeat(self, every_s=self.lease_ttl_s / 3)
        heartbeat.start()
        try:
            self.reap()
            return self.evaluate_once()
        finally:
            heartbeat.stop()
            self.release()

    def run(self, stop: threading.Event) -> None:
        """Evaluate triggers until ``stop`` is set, while holding the lease; wait for it while
        another scheduler holds it. Releases the lease on the way out."""
        heartbeat: _Heartbeat | None = None
        self._event(f"scheduler {self.holder} started (polling every {self.poll_s:g}s)")
        try:
            while not stop.is_set():
                if heartbeat is not None and heartbeat.lost.is_set():
                    heartbeat.stop()
                    heartbeat = None
                    self._event("lost the scheduler lease; waiting for it")
                if heartbeat is None:
                    if not self._try_acquire():
                        stop.wait(self.poll_s)
                        continue
                    heartbeat = _Heartbeat(self, every_s=self.lease_ttl_s / 3)
                    heartbeat.start()
                    self.reap()
                try:
                    self._evaluate(self._clock(), run=True, stop=stop)
                except UnavailableError as exc:
                    self._note("database", str(exc))
                stop.wait(self._sleep_s())
        finally:
            if heartbeat is not None:
                heartbeat.stop()
                self.release()
            self._event(f"scheduler {self.holder} stopped")

    def _try_acquire(self) -> bool:
        try:
            acquired = self.acquire()
        except UnavailableError as exc:
            self._note("database", str(exc))
            return False
        if acquired:
            self._notes.pop("lease", None)
            self._event("holds the scheduler lease")
            return True
        lease = self.lease()
        holder = lease.holder if lease else "another scheduler"
        self._note("lease", f"waiting: the scheduler lease is held by {holder}")
        return False

    def _sleep_s(self) -> float:
        if self._next_due is None:
            return self.poll_s
        return max(0.05, min(self.poll_s, (self._next_due - self._clock()) / 1000 + 0.01))

    def _event(self, message: str) -> None:
        if self._on_event is not None:
            self._on_event(message)

    def _note(self, key: str, message: str) -> None:
        """Tell a recurring condition once, until it changes."""
        if self._notes.get(key) != message:
            self._notes[key] = message
            self._event(message)


class _Heartbeat(threading.Thread):
    """Renews the lease while the scheduler holds it, also during a long pipeline run."""

    def __init__(self, scheduler: Scheduler, *, every_s: float) -> None:
        super().__init__(name="lockgate-scheduler-lease", daemon=True)
        self._scheduler = scheduler
        self._every_s = every_s
        self._stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._every_s):
            try:
                if not self._scheduler.acquire():
                    self.lost.set()
                    return
            except UnavailableError:
                continue  # the next beat tries again; the lease outlives a short outage

    def stop(self) -> None:
        self._stopped.set()
        self.join()


def _settings_env(ws: Workspace) -> dict[str, str]:
    """The workspace's settings as LOCKGATE_* variables, so a worker opens the same workspace."""
    s = ws.settings
    env = {
        "LOCKGATE_HOME": str(s.home.resolve()),
        "LOCKGATE_DATABASE_URL": s.resolved_database_url,
        "LOCKGATE_ARTIFACT_ROOT": s.resolved_artifact_root,
        "LOCKGATE_IDENTITY": s.actor,
        "LOCKGATE_CAPTURE_CODE": "true" if s.capture_code else "false",
        "LOCKGATE_AUDIT_KEY_FILE": str(s.key_file.resolve()),
        "LOCKGATE_OFFLINE_STORE": s.resolved_offline_store,
    }
    if s.online_store_url:
        env["LOCKGATE_ONLINE_STORE_URL"] = s.online_store_url
    if s.s3_endpoint_url:
        env["LOCKGATE_S3_ENDPOINT_URL"] = s.s3_endpoint_url
    return env


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (it ends its pipeline run as KILLED), SIGKILL
    after 30 s."""
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, None)):
        if worker.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, sig)
        try:
            worker.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def worker_main(argv: list[str]) -> int:
    """``python -c …worker_main FIRING EXECUTOR``: run one claimed firing in a fresh process."""
    fire_id, executor = int(argv[0]), argv[1]

    def interrupted(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    with Workspace.open() as ws:
        try:
            fire = execute_fire(ws, fire_id, executor=executor)
        except KeyboardInterrupt:
            return 130
    return 0 if fire.status == "SUCCEEDED" else 1

"""A firing: one decision that a trigger's pipeline should run, and why. It is recorded
first (PENDING, inside the transaction that decided it, with its audit event), claimed by one
runner (RUNNING) and ends SUCCEEDED or FAILED with the pipeline run it started."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from lockgate.audit import AuditLog
from lockgate.clock import now_millis, to_iso
from lockgate.entities import LineageEdge, NodeKind
from lockgate.errors import LockgateError, NotFoundError
from lockgate.pipelines._dataref import decode_params
from lockgate.pipelines._loader import load_pipeline
from lockgate.pipelines._runner import PipelineFailed, run_pipeline
from lockgate.store import TriggerRepository
from lockgate.workspace import Workspace

__all__ = ["FIRE_STATUSES", "TriggerFire", "execute_fire", "record_fire"]

# A firing is PENDING until a runner claims it, RUNNING while its pipeline runs, then
# SUCCEEDED or FAILED. SKIPPED firings (cooldown, duplicate, disabled) are reported, not stored.
FIRE_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "SKIPPED")
_REPO = TriggerRepository()


@dataclass(frozen=True, slots=True, kw_only=True)
class TriggerFire:
    """One firing of a trigger: why, by whom, and the pipeline run it started.

    A firing that did not happen (``status == "SKIPPED"``) has no ``id`` and says why in ``note``.
    """

    id: int | None
    trigger: str
    reason: str
    details: dict[str, Any]
    actor: str
    status: str
    fired_at: int
    dedup_key: str | None = None
    run_id: str | None = None
    note: str | None = None
    skip_reason: str | None = None  # cooldown, duplicate, waiting or disabled
    runner: str | None = None
    started_at: int | None = None
    ended_at: int | None = None

    @property
    def fired(self) -> bool:
        return self.status != "SKIPPED"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "reason": self.reason,
            "details": self.details,
            "actor": self.actor,
            "status": self.status,
            "fired_at": to_iso(self.fired_at),
            "run_id": self.run_id,
            "note": self.note,
            "started_at": to_iso(self.started_at),
            "ended_at": to_iso(self.ended_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TriggerFire:
        return cls(
            id=int(row["id"]),
            trigger=row["trigger"],
            reason=row["reason"],
            details=dict(row["details"] or {}),
            actor=row["actor"],
            status=row["status"],
            fired_at=int(row["fired_at"]),
            dedup_key=row["dedup_key"],
            run_id=row["run_id"],
            note=row["error"],
            runner=row["runner"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
        )


def record_fire(
    conn: Connection,
    audit: AuditLog,
    row: dict[str, Any],
    *,
    reason: str,
    details: dict[str, Any],
    actor: str,
    dedup_key: str | None,
    force: bool,
    now: int,
) -> TriggerFire:
    """Inside the caller's write transaction (the trigger row locked): record a PENDING
    firing, or return a SKIPPED one saying why not."""
    trigger_id = int(row["id"])
    duplicate = _REPO.fire_with_key(conn, trigger_id, dedup_key) if dedup_key else None
    note = cause = None
    if not force:
        pending = _REPO.pending_fire(conn, trigger_id)
        until = (row["last_fired_at"] or 0) + int(row["cooldown_ms"])
        if not row["enabled"]:
            cause, note = (
                "disabled",
                f"trigger '{row['name']}' is disabled; enable it: lockgate triggers enable {row['name']}",
            )
        elif duplicate is not None:
            cause, note = "duplicate", f"this event fired it already (firing {duplicate})"
        elif pending is not None:
            cause, note = "waiting", f"firing {pending} is still waiting to run"
        elif row["last_fired_at"] is not None and now < until:
            cause, note = "cooldown", f"cooling down until {to_iso(until)}"
    fire = TriggerFire(
        id=None,
        trigger=row["name"],
        reason=reason,
        details=details,
        actor=actor,
        status="SKIPPED" if note else "PENDING",
        fired_at=now,
        dedup_key=None if duplicate is not None else dedup_key,
        note=note,
        skip_reason=cause,
    )
    if note:
        return fire
    fire_id = _REPO.insert_fire(
        conn,
        trigger_id=trigger_id,
        reason=reason,
        details=details,
        actor=actor,
        dedup_key=fire.dedup_key,
        status="PENDING",
        fired_at=now,
    )
    _REPO.update(conn, trigger_id, last_fired_at=now)
    row["last_fired_at"] = now
    audit.record(
        conn,
        actor=actor,
        action="trigger.fired",
        object_kind="trigger",
        object_id=row["name"],
        details={"firing": fire_id, "reason": reason, "details": details, "forced": force},
    )
    return TriggerFire(**{**_fields(fire), "id": fire_id})


def execute_fire(
    ws: Workspace, fire_id: int, *, executor: str = "local", progress: Callable[[str, str], None] | None = None
) -> TriggerFire:
    """Run a firing this process has claimed (RUNNING) and record how it ended."""
    with ws.db.read() as conn:
        fire = TriggerFire.from_row(_REPO.fires(conn, ids=[fire_id])[0])
        row = _REPO.get(conn, fire.trigger)
    run_id: str | None = None
    error: str | None = None
    try:
        if row is None:
            raise NotFoundError(f"trigger '{fire.trigger}' was removed before firing {fire_id} ran")
        tags = {
            "lockgate.trigger": fire.trigger,
            "lockgate.trigger_reason": fire.reason,
            "lockgate.trigger_firing": str(fire_id),
            "lockgate.trigger_actor": fire.actor,
        }
        flow = load_pipeline(row["pipeline"])
        result = run_pipeline(
            ws, flow, params=decode_params(row["params"]), executor=executor, tags=tags, progress=progress
        )
        run_id = result.run_id
    except PipelineFailed as exc:
        run_id, error = exc.result.run_id, str(exc)
    except LockgateError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failing pipeline is recorded; the scheduler goes on
        error = f"{type(exc).__name__}: {exc}"
    except BaseException as exc:  # interrupted (Ctrl-C, shutdown): the firing does not stay RUNNING
        _finish(ws, fire, None, f"interrupted ({type(exc).__name__}); fire it again to retry")
        raise
    return _finish(ws, fire, run_id, error, watch=row["watch"] if row else None)


def _finish(
    ws: Workspace, fire: TriggerFire, run_id: str | None, error: str | None, *, watch: str | None = None
) -> TriggerFire:
    assert fire.id is not None
    with ws.db.write() as conn:
        _REPO.update_fire(
            conn,
            fire.id,
            only_status="RUNNING",
            status="FAILED" if error else "SUCCEEDED",
            run_id=run_id,
            ended_at=now_millis(),
            error=error[:2000] if error else None,
        )
        version = fire.details.get("content_hash")
        if run_id and watch and isinstance(version, str):
            # The data version that fired the trigger, upstream of the run it started.
            edge = LineageEdge(
                src_kind=NodeKind.DATASET,
                src_id=f"{watch}@{version}",
                relation="trigger",
                dst_kind=NodeKind.RUN,
                dst_id=run_id,
            )
            ws.lineage.record(conn, [edge])
        return TriggerFire.from_row(_REPO.fires(conn, ids=[fire.id])[0])


def _fields(fire: TriggerFire) -> dict[str, Any]:
    return {name: getattr(fire, name) for name in TriggerFire.__dataclass_fields__}

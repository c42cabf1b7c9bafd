"""Continuous-training triggers: records in the metadata store that say when a pipeline runs
again, and why.

A trigger is a cron schedule (UTC), a watched folder (new data: a new or changed file, by
content hash), or manual only; any trigger can also be fired by hand or by a monitor calling
:meth:`TriggerService.fire` with a reason. Each firing is recorded first (reason, details,
actor) and run after, by :class:`~lockgate.pipelines.Scheduler` or at once with
:meth:`TriggerService.run`; the pipeline run it starts carries the tags ``lockgate.trigger``
and ``lockgate.trigger_reason``. A cooldown keeps a trigger from firing again too soon, and
de-duplication keeps one event (a schedule tick, a data version, a caller's key) from
firing twice, and folds firings that arrive while one is still waiting into it.

>>> import lockgate as lg, pathlib, tempfile
>>> from lockgate.pipelines import TriggerService
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "flow.py").write_text(
...     "from lockgate import pipeline, step\\n"
...     "@step\\ndef double(n: int) -> int:\\n    return 2 * n\\n"
...     "@pipeline\\ndef flow(n: int = 1):\\n    return double(n)\\n"
... )
>>> ws = lg.Workspace.open(root / "ws")
>>> triggers = TriggerService(ws)
>>> triggers.add("nightly", pipeline=str(root / "flow.py"), cron="0 2 * * *", params={"n": 3}, cooldown="1h").kind
'cron'
>>> fire = triggers.fire("nightly", details={"ticket": "ML-42"})
>>> done = triggers.run(fire, executor="inline")
>>> done.status, ws.runs.get(done.run_id).tags["lockgate.trigger_reason"]
('SUCCEEDED', 'manual')
>>> triggers.fire("nightly").note  # within the cooldown
'cooling down until ...'
>>> ws.close()
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection

from lockgate.clock import now_millis, parse_duration, to_iso
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.hashing import canonical_json
from lockgate.pipelines._cron import check_cron, next_tick
from lockgate.pipelines._dataref import encode_params
from lockgate.pipelines._firing import TriggerFire, execute_fire, record_fire
from lockgate.pipelines._loader import load_pipeline
from lockgate.pipelines._watch import FolderSnapshot
from lockgate.refs import is_valid_name
from lockgate.store import TriggerRepository
from lockgate.tracking._runs import looks_like_secret
from lockgate.workspace import Workspace

__all__ = ["Trigger", "TriggerFire", "TriggerService"]

_REPO = TriggerRepository()


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger:
    """A trigger as recorded: what runs (``pipeline`` FILE[:NAME] with ``params``), and when."""

    id: int
    name: str
    kind: str  # cron, data or manual
    pipeline: str
    params: dict[str, Any]
    workdir: str
    schedule: str | None
    watch: str | None
    cooldown_s: float
    enabled: bool
    last_fired_at: int | None
    last_tick_at: int | None
    created_at: int
    created_by: str
    updated_at: int

    def next_fire_at(self, now: int | None = None) -> int | None:
        """When the schedule is next due (cron triggers), in epoch milliseconds."""
        if self.schedule is None or not self.enabled:
            return None
        return next_tick(self.schedule, max(now if now is not None else now_millis(), self.last_tick_at or 0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "pipeline": self.pipeline,
            "params": self.params,
            "workdir": self.workdir,
            "cron": self.schedule,
            "watch": self.watch,
            "cooldown_s": self.cooldown_s,
            "enabled": self.enabled,
            "last_fired_at": to_iso(self.last_fired_at),
            "next_fire_at": to_iso(self.next_fire_at()),
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Trigger:
        return cls(
            id=int(row["id"]),
            name=row["name"],
            kind=row["kind"],
            pipeline=row["pipeline"],
            params=dict(row["params"] or {}),
            workdir=row["workdir"],
            schedule=row["schedule"],
            watch=row["watch"],
            cooldown_s=int(row["cooldown_ms"]) / 1000,
            enabled=bool(row["enabled"]),
            last_fired_at=row["last_fired_at"],
            last_tick_at=row["last_tick_at"],
            created_at=int(row["created_at"]),
            created_by=row["created_by"],
            updated_at=int(row["updated_at"]),
        )


class TriggerService:
    """Add, list, fire and run triggers of one workspace; every change is audited.

    ``actor`` defaults to the workspace identity; a monitor firing a trigger passes its own.
    """

    def __init__(self, ws: Workspace, *, actor: str | None = None) -> None:
        self._ws = ws
        self._actor = actor or ws.settings.actor

    # -- records -------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        *,
        pipeline: str,
        params: dict[str, Any] | None = None,
        cron: str | None = None,
        watch: str | Path | None = None,
        cooldown: str | float = 0,
        enabled: bool = True,
        workdir: str | Path | None = None,
        now: int | None = None,
    ) -> Trigger:
        """Record a trigger: ``cron`` (a schedule), ``watch`` (a folder: new data) or neither
        (manual); ``pipeline`` is ``path/to/pipeline.py`` or ``path/to/pipeline.py:NAME``.

        A schedule counts from now and a watched folder's current files are taken as seen,
        so a new trigger fires at the next tick or on the next new file, not at once.
        Relative paths (the pipeline, the folder, ``DataRef`` params) mean what they mean in
        ``workdir`` (default: the current folder), where the scheduler runs the pipeline.
        """
        if not is_valid_name(name):
            raise InvalidInputError(
                f"trigger name {name!r} is not valid; use letters, digits, '_', '.' or '-' (up to 256)"
            )
        if cron is not None and watch is not None:
            raise InvalidInputError(f"trigger '{name}' takes --cron or --watch, not both; add two triggers")
        schedule = check_cron(cron) if cron is not None else None
        cooldown_ms = round(parse_duration(cooldown).total_seconds() * 1000)
        base = Path(workdir).expanduser().resolve() if workdir is not None else Path.cwd()
        spec, stored_params = _check_pipeline(pipeline, params or {}, base)
        folder: Path | None = None
        snapshot: FolderSnapshot | None = None
        if watch is not None:
            folder = (base / Path(watch).expanduser()).resolve()
            if not folder.is_dir():
                raise NotFoundError(f"watch folder {watch} does not exist; create it or check the path")
            snapshot = FolderSnapshot.take(folder)
        now = now if now is not None else now_millis()
        values = {
            "name": name,
            "kind": "cron" if schedule else "data" if folder else "manual",
            "pipeline": spec,
            "params": stored_params,
            "workdir": str(base),
            "schedule": schedule,
            "watch": str(folder) if folder else None,
            "cooldown_ms": cooldown_ms,
            "enabled": enabled,
            "last_tick_at": now if schedule else None,
            "watch_state": snapshot.to_json() if snapshot else None,
            "last_fired_at": None,
            "created_at": now,
            "created_by": self._actor,
            "updated_at": now,
        }
        with self._ws.db.write() as conn:
            values["id"] = _REPO.insert(conn, **values)
            if values["id"] is None:
                raise ConflictError(
                    f"trigger '{name}' already exists; pick another name or remove it first: "
                    f"lockgate triggers remove {name}"
                )
            self._audit(conn, "trigger.added", name, {k: values[k] for k in _AUDITED})
        return Trigger.from_row(values)

    def get(self, name: str) -> Trigger:
        with self._ws.db.read() as conn:
            return Trigger.from_row(_require(conn, name))

    def list(self) -> builtins.list[Trigger]:
        with self._ws.db.read() as conn:
            return [Trigger.from_row(r) for r in _REPO.list(conn)]

    def remove(self, name: str) -> None:
        """Delete a trigger and its firing history (the audit log keeps both)."""
        with self._ws.db.write() as conn:
            row = _require(conn, name, lock=True)
            _REPO.delete(conn, int(row["id"]))
            self._audit(conn, "trigger.removed", name, {"kind": row["kind"], "pipeline": row["pipeline"]})

    def set_enabled(self, name: str, enabled: bool, *, now: int | None = None) -> Trigger:
        """Enable or disable a trigger. Enabling starts afresh: the schedule counts from now
        and the folder's current files are taken as seen."""
        now = now if now is not None else now_millis()
        with self._ws.db.read() as conn:
            row = _require(conn, name)
        snapshot = None
        if enabled and not row["enabled"] and row["watch"] and Path(row["watch"]).is_dir():
            snapshot = FolderSnapshot.take(Path(row["watch"]))
        with self._ws.db.write() as conn:
            row = _require(conn, name, lock=True)
            if bool(row["enabled"]) != enabled:
                values: dict[str, Any] = {"enabled": enabled, "updated_at": now}
                if enabled and row["schedule"]:
                    values["last_tick_at"] = now
                if snapshot is not None:
                    values["watch_state"] = snapshot.to_json()
                _REPO.update(conn, int(row["id"]), **values)
                self._audit(conn, "trigger.enabled" if enabled else "trigger.disabled", name, {})
                row.update(values)
        return Trigger.from_row(row)

    # -- firing --------------------------------------------------------------------------------

    def fire(
        self,
        name: str,
        reason: str = "manual",
        details: dict[str, Any] | None = None,
        *,
        dedup_key: str | None = None,
        force: bool = False,
        now: int | None = None,
    ) -> TriggerFire:
        """Record that ``name`` should run, and why; the scheduler (or :meth:`run`) runs it.

        Drift and KPI monitors call this with their own reason and evidence, e.g.
        ``fire("retrain", "drift", {"feature": "amount", "psi": 0.31}, dedup_key="drift:2026-11-29")``.
        It is skipped (``status == "SKIPPED"``, ``note`` says why) while the trigger cools
        down, when ``dedup_key`` already fired it, while a firing of it still waits to run, or
        when it is disabled; ``force`` fires it anyway.
        """
        reason = _check_reason(reason)
        details = _check_details(details)
        with self._ws.db.write() as conn:
            row = _require(conn, name, lock=True)
            return record_fire(
                conn,
                self._ws.audit,
                row,
                reason=reason,
                details=details,
                actor=self._actor,
                dedup_key=dedup_key,
                force=force,
                now=now if now is not None else now_millis(),
            )

    def history(self, name: str | None = None, *, limit: int = 20) -> builtins.list[TriggerFire]:
        """Recent firings, newest first (of one trigger, or of all)."""
        with self._ws.db.read() as conn:
            trigger_id = int(_require(conn, name)["id"]) if name is not None else None
            return [TriggerFire.from_row(r) for r in _REPO.fires(conn, trigger_id=trigger_id, limit=limit)]

    def run(
        self,
        fire: TriggerFire | int,
        *,
        executor: str = "local",
        runner: str | None = None,
        progress: Callable[[str, str], None] | None = None,
    ) -> TriggerFire:
        """Run a PENDING firing now, in this process; returns it SUCCEEDED or FAILED."""
        fire_id = fire if isinstance(fire, int) else fire.id
        if fire_id is None:
            raise InvalidInputError(
                f"this firing of '{getattr(fire, 'trigger', '?')}' was skipped; there is nothing to run"
            )
        with self._ws.db.write() as conn:
            claimed = _REPO.claim_fire(conn, fire_id, runner=runner or f"api:{self._actor}", now=now_millis())
        if not claimed:
            raise ConflictError(f"firing {fire_id} is not waiting to run (it ran already or is running)")
        return execute_fire(self._ws, fire_id, executor=executor, progress=progress)

    def _audit(self, conn: Connection, action: str, name: str, details: dict[str, Any]) -> None:
        self._ws.audit.record(
            conn, actor=self._actor, action=action, object_kind="trigger", object_id=name, details=details
        )


_AUDITED = ("kind", "pipeline", "params", "schedule", "watch", "cooldown_ms", "enabled")


# -- checks and conversions ------------------------------------------------------------------


def _require(conn: Connection, name: str, *, lock: bool = False) -> dict[str, Any]:
    row = _REPO.get(conn, name, lock=lock)
    if row is None:
        raise NotFoundError(f"trigger '{name}' does not exist; see: lockgate triggers list")
    return row


def _check_pipeline(spec: str, params: dict[str, Any], base: Path) -> tuple[str, dict[str, Any]]:
    """The spec with an absolute file path (the scheduler may run elsewhere), and the params
    as JSON, after checking that the pipeline loads and takes them."""
    file, sep, name = spec.partition(":") if not (base / spec).exists() else (spec, "", "")
    path = base / Path(file).expanduser()
    if not path.is_file():
        raise NotFoundError(f"pipeline file {file} does not exist; check the path")
    resolved = str(path.resolve()) + (sep + name if sep else "")
    flow = load_pipeline(resolved)
    known = flow.parameter_types()
    for key in params:
        if looks_like_secret(key):
            raise InvalidInputError(
                f"parameter '{key}' looks like a credential, and trigger params are stored in plain text; "
                "let the pipeline read it from the environment instead"
            )
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InvalidInputError(
            f"pipeline '{flow.name}' has no parameter '{unknown[0]}' (parameters: {', '.join(known) or 'none'})"
        )
    stored: dict[str, Any] = {}
    for key, value in params.items():
        try:
            stored.update(encode_params({key: value}))
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"parameter '{key}' of trigger pipeline '{flow.name}' must be JSON (a number, text, list or object)"
            ) from None
    return resolved, stored


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > 64:
        raise InvalidInputError(f"a firing reason must be a short word or phrase (1-64 characters), not {reason!r}")
    return reason.strip()


def _check_details(details: dict[str, Any] | None) -> dict[str, Any]:
    if details is None:
        return {}
    if not isinstance(details, dict):
        raise InvalidInputError("a firing's details must be a dict of JSON values, e.g. {'psi': 0.31}")
    checked: dict[str, Any] = json.loads(canonical_json(details))
    return checked

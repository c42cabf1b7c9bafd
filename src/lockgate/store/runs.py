"""SQL for experiments, runs, params, metrics, tags, run artifacts and environments."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from lockgate.entities import Experiment, Metric, RunRecord, RunStatus
from lockgate.store import schema as t
from lockgate.store.dialect import driver_insert_sql, driver_select_in_sql, insert_ignore, upsert
from lockgate.store.query import ATTRIBUTES, Clause, OrderBy

__all__ = ["MODEL_ATTACHMENT_RELATIONS", "RunRepository"]

# Lineage relations that tie a stored object to a model version besides its own bytes: the
# registration example (object -> version) and what serving derives once per version (an
# ONNX conversion and the report of its check; version -> object). gc keeps these objects.
MODEL_ATTACHMENT_RELATIONS = ("input_example", "onnx", "onnx_check")

_RUN_COLUMNS = [c for c in t.runs.c if c.name not in ("experiment_id", "deleted", "heartbeat_at")]


class RunRepository:
    """Reads and writes run records inside the caller's transaction."""

    # -- experiments -----------------------------------------------------------------------

    def get_or_create_experiment(self, conn: Connection, name: str, *, actor: str, now: int) -> int:
        found = conn.execute(sa.select(t.experiments.c.id).where(t.experiments.c.name == name)).scalar()
        if found is not None:
            return int(found)
        conn.execute(insert_ignore(conn, t.experiments).values(name=name, created_at=now, created_by=actor))
        return int(conn.execute(sa.select(t.experiments.c.id).where(t.experiments.c.name == name)).scalar_one())

    def list_experiments(self, conn: Connection) -> list[Experiment]:
        rows = conn.execute(sa.select(t.experiments).order_by(t.experiments.c.name)).mappings()
        return [Experiment(**dict(r)) for r in rows]

    # -- runs ------------------------------------------------------------------------------

    def insert_run(self, conn: Connection, **values: Any) -> None:
        conn.execute(sa.insert(t.runs).values(**values))

    def set_status(self, conn: Connection, run_id: str, status: RunStatus, *, end_time: int | None) -> None:
        conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(status=str(status), end_time=end_time))

    def claim(self, conn: Connection, run_id: str, *, host: str, pid: int, now: int) -> None:
        """This process now owns the run (resume): reaping looks at its pid from here on."""
        conn.execute(sa.update(t.runs).where(t.runs.c.id == run_id).values(host=host, pid=pid, heartbeat_at=now))

    def heartbeat(self, conn: Connection, run_id: str, now: int) -> None:
        # Only a running run beats: a beat that waited on the write lock while the run ended
        # must not land after the end.
        conn.execute(
            sa.update(t.runs)
            .where(t.runs.c.id == run_id, t.runs.c.status == str(RunStatus.RUNNING))
            .values(heartbeat_at=now)
        )

    def mark_deleted(self, conn: Connection, run_ids: Sequence[str]) -> None:
        conn.execute(sa.update(t.runs).where(t.runs.c.id.in_(run_ids)).values(deleted=True))

    def running(self, conn: Connection) -> list[dict[str, Any]]:
        query = sa.select(t.runs.c.id, t.runs.c.host, t.runs.c.pid, t.runs.c.heartbeat_at).where(
            t.runs.c.status == str(RunStatus.RUNNING)
        )
        return [dict(r) for r in conn.execute(query).mappings()]

    def resolve_id(self, conn: Connection, prefix: str) -> list[str]:
        """Run ids starting with ``prefix`` (users type short ids, as with git)."""
        if len(prefix) == 32:
            query = sa.select(t.runs.c.id).where(t.runs.c.id == prefix)
        else:
            query = sa.select(t.runs.c.id).where(t.runs.c.id.like(f"{prefix}%")).limit(2)
        return [str(r) for r in conn.execute(query).scalars()]

    def get(self, conn: Connection, run_ids: Sequence[str]) -> list[RunRecord]:
        query = (
            sa.select(*_RUN_COLUMNS, t.experiments.c.name.label("experiment"))
            .join(t.experiments, t.experiments.c.id == t.runs.c.experiment_id)
            .where(t.runs.c.id.in_(run_ids))
        )
        rows = {r["id"]: dict(r) for r in conn.execute(query).mappings()}
        return self._hydrate(conn, [rows[i] for i in run_ids if i in rows])

    def search(
        self,
        conn: Connection,
        *,
        experiments: Sequence[str] | None,
        clauses: Sequence[Clause],
        order_by: Sequence[OrderBy],
        include_children: bool,
        include_deleted: bool = False,
        limit: int | None = None,
    ) -> list[RunRecord]:
        query = sa.select(*_RUN_COLUMNS, t.experiments.c.name.label("experiment")).join(
            t.experiments, t.experiments.c.id == t.runs.c.experiment_id
        )
        if experiments:
            query = query.where(t.experiments.c.name.in_(experiments))
        if not include_children:
            query = query.where(t.runs.c.parent_id.is_(None))
        if not include_deleted:
            query = query.where(t.runs.c.deleted == sa.false())
        for clause in clauses:
            query = query.where(_condition(clause))
        orderings: list[Any] = []
        for i, order in enumerate(order_by):
            column = _order_column(order, i)
            if isinstance(column, tuple):
                alias, col = column
                query = query.outerjoin(alias, sa.and_(alias.c.run_id == t.runs.c.id, alias.c.key == order.field.key))
                column = col
            # Runs without the key sort last either way, as users expect.
            orderings.append(column.is_(None))
            orderings.append(column.desc() if order.descending else column.asc())
        orderings.extend([t.runs.c.start_time.desc(), t.runs.c.id])
        query = query.order_by(*orderings)
        if limit:
            query = query.limit(limit)
        rows = [dict(r) for r in conn.execute(query).mappings().all()]
        return self._hydrate(conn, rows)

    def _hydrate(self, conn: Connection, rows: list[dict[str, Any]]) -> list[RunRecord]:
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        # .all() fetches in one call; iterating a result fetches row by row, which dominated
        # search time for a few thousand params and metrics.
        # Straight to the DBAPI cursor: SQLAlchemy's row processing cost more than the queries
        # themselves for a search over a few thousand params and metrics.
        cursor = conn.connection.cursor()
        try:
            for chunk in _chunks(ids, 500):
                for table, into in ((t.params, params), (t.latest_metrics, metrics), (t.tags, tags)):
                    cursor.execute(driver_select_in_sql(conn, table, chunk), tuple(chunk))
                    for run_id, key, value in cursor.fetchall():
                        into[run_id][key] = value
        finally:
            cursor.close()
        for values in metrics.values():
            for key, value in values.items():
                if value is None:  # NaN is stored as NULL (see schema.MetricValue)
                    values[key] = math.nan
        out = []
        for r in rows:
            r["status"] = RunStatus(r["status"])
            out.append(
                RunRecord(
                    **r,
                    params=dict(sorted(params[r["id"]].items())),
                    metrics=dict(sorted(metrics[r["id"]].items())),
                    tags=dict(sorted(tags[r["id"]].items())),
                )
            )
        return out

    # -- params, metrics, tags -------------------------------------------------------------

    def insert_params(self, conn: Connection, run_id: str, values: dict[str, str]) -> dict[str, str]:
        """Insert params that are new; returns the stored value of every key given."""
        conn.exec_driver_sql(
            driver_insert_sql(conn, t.params, ("run_id", "key", "value"), ignore_conflicts=True),
            [(run_id, k, v) for k, v in values.items()],
        )
        rows = conn.execute(
            sa.select(t.params.c.key, t.params.c.value).where(
                t.params.c.run_id == run_id, t.params.c.key.in_(list(values))
            )
        )
        return {str(row[0]): str(row[1]) for row in rows}

    def insert_metrics(self, conn: Connection, run_id: str, points: Sequence[Metric]) -> None:
        # The hottest write lockgate has: straight to the driver, skipping SQLAlchemy's per-row
        # parameter processing (which cost more than SQLite's own insert). NaN is stored as NULL,
        # as MetricValue does on every other path.
        conn.exec_driver_sql(
            driver_insert_sql(conn, t.metrics, _METRIC_COLUMNS),
            [(run_id, p.key, None if p.value != p.value else p.value, p.step, p.timestamp) for p in points],
        )
        latest: dict[str, Metric] = {}
        for p in points:
            seen = latest.get(p.key)
            if seen is None or (p.step, p.timestamp) >= (seen.step, seen.timestamp):
                latest[p.key] = p
        conn.exec_driver_sql(
            driver_insert_sql(
                conn,
                t.latest_metrics,
                _METRIC_COLUMNS,
                conflict_keys=("run_id", "key"),
                update=("value", "step", "timestamp"),
                update_when=_NEWER_POINT,
            ),
            [(run_id, p.key, None if p.value != p.value else p.value, p.step, p.timestamp) for p in latest.values()],
        )

    def metric_history(self, conn: Connection, run_id: str, key: str | None = None) -> list[Metric]:
        query = sa.select(t.metrics.c.key, t.metrics.c.value, t.metrics.c.step, t.metrics.c.timestamp).where(
            t.metrics.c.run_id == run_id
        )
        if key is not None:
            query = query.where(t.metrics.c.key == key)
        query = query.order_by(t.metrics.c.key, t.metrics.c.step, t.metrics.c.timestamp, t.metrics.c.id)
        return [Metric(**dict(r)) for r in conn.execute(query).mappings()]

    def set_tags(self, conn: Connection, run_id: str, values: dict[str, str]) -> None:
        stmt = upsert(conn, t.tags, keys=["run_id", "key"], update=["value"])
        conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in values.items()])

    # -- artifacts and environments -----------------------------------------------------------

    def record_artifact(self, conn: Connection, sha256: str, size: int, now: int) -> None:
        conn.execute(insert_ignore(conn, t.artifacts).values(sha256=sha256, size=size, created_at=now))

    def attach_artifact(self, conn: Connection, run_id: str, path: str, sha256: str, size: int) -> None:
        stmt = upsert(conn, t.run_artifacts, keys=["run_id", "path"], update=["sha256", "size"])
        conn.execute(stmt, [{"run_id": run_id, "path": path, "sha256": sha256, "size": size}])

    def run_artifacts(self, conn: Connection, run_id: str) -> list[dict[str, Any]]:
        query = (
            sa.select(t.run_artifacts.c.path, t.run_artifacts.c.sha256, t.run_artifacts.c.size)
            .where(t.run_artifacts.c.run_id == run_id)
            .order_by(t.run_artifacts.c.path)
        )
        return [dict(r) for r in conn.execute(query).mappings()]

    def upsert_environment(self, conn: Connection, **values: Any) -> None:
        conn.execute(insert_ignore(conn, t.environments).values(**values))

    def get_environment(self, conn: Connection, env_hash: str) -> dict[str, Any] | None:
        row = conn.execute(sa.select(t.environments).where(t.environments.c.hash == env_hash)).mappings().first()
        return dict(row) if row else None

    def referenced_artifacts(self, conn: Connection) -> set[str]:
        """Every artifact digest a live record points to (run files, models, data sets, code,
        environments, and objects attached to model versions by lineage)."""
        found: set[str] = set()
        edges = t.lineage_edges
        for column, side in ((edges.c.src_id, edges.c.src_kind), (edges.c.dst_id, edges.c.dst_kind)):
            attached = sa.select(column).where(edges.c.relation.in_(MODEL_ATTACHMENT_RELATIONS), side == "artifact")
            found.update(str(v) for v in conn.execute(attached.distinct()).scalars())
        for column in (
            t.run_artifacts.c.sha256,
            t.model_versions.c.artifact_sha256,
            t.datasets.c.artifact_sha256,
            t.runs.c.code_diff_sha256,
            t.environments.c.packages_sha256,
        ):
            found.update(
                str(v) for v in conn.execute(sa.select(column).where(column.is_not(None)).distinct()).scalars()
            )
        return found

    def forget_artifacts(self, conn: Connection, digests: Sequence[str]) -> None:
        """Drop the records of objects gc removed (only those no live record points to)."""
        for chunk in _chunks(list(digests), 500):
            conn.execute(sa.delete(t.artifacts).where(t.artifacts.c.sha256.in_(chunk)))


_METRIC_COLUMNS = ("run_id", "key", "value", "step", "timestamp")
# A metric point replaces the latest one when its step (then its timestamp) is not older.
_NEWER_POINT = (
    "excluded.step > latest_metrics.step OR (excluded.step = latest_metrics.step AND "
    'excluded."timestamp" >= latest_metrics."timestamp")'
)


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _compare(column: Any, op: str, value: Any) -> Any:
    match op:
        case "=":
            return column == value
        case "!=":
            return column != value
        case "<":
            return column < value
        case "<=":
            return column <= value
        case ">":
            return column > value
        case ">=":
            return column >= value
        # The same escape character on both backends (PostgreSQL's default; SQLite has none),
        # so a pattern means the same thing wherever the workspace lives.
        case "LIKE":
            return column.like(value, escape="\\")
        case "ILIKE":
            return column.ilike(value, escape="\\")
        case "IN":
            return column.in_(value)
        case "NOT IN":
            return column.not_in(value)
    raise ValueError(op)  # pragma: no cover - the parser only produces the ops above


def _condition(clause: Clause) -> Any:
    kind, key = clause.field.kind, clause.field.key
    if kind == "attribute":
        return _compare(t.runs.c[ATTRIBUTES[key]], clause.op, clause.value)
    table = {"metric": t.latest_metrics, "param": t.params, "tag": t.tags}[kind]
    return sa.exists().where(
        table.c.run_id == t.runs.c.id, table.c.key == key, _compare(table.c.value, clause.op, clause.value)
    )


def _order_column(order: OrderBy, index: int) -> Any:
    kind, key = order.field.kind, order.field.key
    if kind == "attribute":
        return t.runs.c[ATTRIBUTES[key]]
    table = {"metric": t.latest_metrics, "param": t.params, "tag": t.tags}[kind]
    alias = table.alias(f"order_{index}")
    return alias, alias.c.value

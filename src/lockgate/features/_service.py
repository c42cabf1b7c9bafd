"""``ws.features``: the feature store's one front door. It orchestrates; the work is elsewhere
(the registry, the offline engine, the online store, the on-demand runner).

>>> import lockgate as lg, tempfile
>>> ws = lg.Workspace.open(tempfile.mkdtemp())
>>> ws.features.freshness().views
[]
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from lockgate.audit import AuditLog
from lockgate.entities import LineageEdge, ModelVersion, NodeKind
from lockgate.errors import ConflictError, InvalidInputError, NotFoundError
from lockgate.features._catalog import Catalog, OnDemandSpec, ResolvedFeature, feature_type_names
from lockgate.features._consumers import Binding
from lockgate.features._definitions import FeatureService, FeatureView, OnDemandFeature, StalePolicy
from lockgate.features._freshness import FreshnessReport, ViewFreshness, latest_event
from lockgate.features._loader import load_definitions
from lockgate.features._plan import ApplyPlan
from lockgate.features._recompute import ComputedViews
from lockgate.features._registry import FeatureRegistry
from lockgate.lineage import LineageService
from lockgate.store import Database, RunRepository
from lockgate.tables import to_arrow
from lockgate.tracking import DatasetService

if TYPE_CHECKING:  # the engines import DuckDB: loaded on first use, so `lockgate --help` stays quick
    from lockgate.features._lookup import OnlineResult
    from lockgate.features._offline import OfflineStore
    from lockgate.features._online import MaterializeResult, OnlineStore
    from lockgate.features._skew import SkewReport

__all__ = ["FeatureStore", "MaterializeProgress", "MaterializeReport", "PushResult"]

MaterializeProgress = Callable[[str, int, int | None], None]
"""Called as ``progress(view, rows_read, rows_total)`` while :meth:`FeatureStore.materialize` runs."""

Refs = FeatureService | str | Sequence[str]


@dataclass(frozen=True, slots=True)
class MaterializeReport:
    """What one :meth:`FeatureStore.materialize` did: computed views written offline, then
    each online view brought up to ``end``."""

    end: datetime
    computed: dict[str, int]
    """Rows written to the offline store per computed view."""
    views: list[MaterializeResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "end": self.end.isoformat(),
            "computed": dict(self.computed),
            "views": [
                {
                    "view": r.view,
                    "version": r.version,
                    "start": r.start.isoformat() if r.start else None,
                    "end": r.end.isoformat() if r.end else None,
                    "rows_read": r.rows_read,
                    "rows_in_window": r.rows_in_window,
                    "entities": r.entities,
                    "written": r.written,
                    "skipped_null_keys": r.skipped_null_keys,
                }
                for r in self.views
            ],
        }


@dataclass(frozen=True, slots=True)
class PushResult:
    """What one :meth:`FeatureStore.push` did: the rows logged offline and the entities updated online."""

    view: str
    rows: int
    offline_uri: str
    online_written: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "rows": self.rows,
            "offline_uri": self.offline_uri,
            "online_written": self.online_written,
        }


class FeatureStore:
    """``ws.features``: definitions (``apply``, ``bind``, and ``registry`` for the rest),
    training sets, materialization, pushes, online reads, freshness and skew."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        lineage: LineageService,
        datasets: DatasetService,
        *,
        actor: str,
        home: Path,
        offline_root: str,
        online_url: str | None = None,
        s3_endpoint_url: str | None = None,
    ) -> None:
        self.registry = FeatureRegistry(db, audit, lineage, actor=actor)
        self._db = db
        self._lineage = lineage
        self._datasets = datasets
        self._home = Path(home)
        self._offline_root = offline_root
        self._online_url = online_url
        self._s3_endpoint_url = s3_endpoint_url
        self._runs = RunRepository()
        self._functions: dict[str, OnDemandFeature] = {}
        self._lock = threading.Lock()
        self._offline: OfflineStore | None = None
        self._online: OnlineStore | None = None

    # -- stores, opened on first use ---------------------------------------------------------

    @property
    def offline_store(self) -> OfflineStore:
        if self._offline is None:
            from lockgate.features._offline import OfflineStore

            self._offline = OfflineStore(self._offline_root, s3_endpoint_url=self._s3_endpoint_url)
        return self._offline

    @property
    def online_store(self) -> OnlineStore:
        with self._lock:
            if self._online is None:
                from lockgate.features._online import open_online_store

                self._online = open_online_store(self._online_url, home=self._home)
            return self._online

    @property
    def _computed(self) -> ComputedViews:
        return ComputedViews(self.offline_store, self._db, self._lineage, s3_endpoint_url=self._s3_endpoint_url)

    def close(self) -> None:
        """Release the online store's connections (reopened on next use)."""
        with self._lock:
            if self._online is not None:
                self._online.close()
                self._online = None

    # -- definitions -------------------------------------------------------------------------

    def apply(self, definitions: Catalog | Iterable[Any] | str | Path, *, dry_run: bool = False) -> ApplyPlan:
        """Register new and changed definitions (a file path, a list, or a catalog) and return the
        diff; see :meth:`FeatureRegistry.apply`. On-demand functions applied are kept for this process."""
        origin = None
        if isinstance(definitions, (str, Path)):
            origin = str(Path(definitions).resolve())
            definitions = load_definitions(definitions)
        elif not isinstance(definitions, Catalog):
            definitions = Catalog.of(definitions)
        if origin is None:
            origin = _functions_file(definitions)
        plan = self.registry.apply(definitions, dry_run=dry_run, origin=origin)
        if plan.applied:
            self._remember(definitions)
        return plan

    def load(self, path: str | Path) -> Catalog:
        """Import a definitions file so its on-demand functions serve this process (nothing is registered)."""
        catalog = load_definitions(path)
        self._remember(catalog)
        return catalog

    def bind(self, service: str | FeatureService, model_version: str | ModelVersion) -> Binding:
        """Bind a model version to the feature service it was trained with; see :meth:`FeatureRegistry.bind`."""
        return self.registry.bind(service, model_version)

    def service_of(self, model_version: str | ModelVersion) -> Binding | None:
        """The feature service a model version reads its features through, as its binding
        (``binding.service``, ``binding.features``), or None; see :meth:`FeatureRegistry.service_of`."""
        return self.registry.service_of(model_version)

    def _remember(self, catalog: Catalog) -> None:
        for od in catalog.on_demand.values():
            if isinstance(od, OnDemandFeature):
                self._functions[od.name] = od

    def _function(self, spec: OnDemandSpec | OnDemandFeature) -> OnDemandFeature:
        """The function of a registered on-demand feature: from this process, else from the file it was applied from."""
        if isinstance(spec, OnDemandFeature):
            return spec
        found = self._functions.get(spec.name)
        if found is None or found.version != spec.version:
            origin = self.registry.get(spec.name, kind="on_demand_feature").origin
            if origin and Path(origin).is_file():
                self.load(origin)
                found = self._functions.get(spec.name)
        if found is None:
            raise NotFoundError(
                f"on-demand feature '{spec.name}' is registered, but its function is not loaded in this process; "
                "load its definitions file first: ws.features.load('features.py')"
            )
        if found.version != spec.version:
            raise ConflictError(
                f"the loaded on-demand feature '{spec.name}' differs from its registered version "
                f"({spec.version[:12]}); apply its definitions file first: lockgate features apply FILE"
            )
        return found

    def _resolve(self, features: Refs) -> tuple[Catalog, list[ResolvedFeature], FeatureService | None]:
        """The registry's catalog, the features asked for, and the service they came through (if any)."""
        catalog = self.registry.current()
        service: FeatureService | None = None
        if isinstance(features, FeatureService):
            service = catalog.service(features.name)
            if service.version != features.version:
                raise ConflictError(
                    f"feature service '{features.name}' differs from its registered version; apply it first: "
                    "lockgate features apply FILE"
                )
            refs = list(service.features)
        elif isinstance(features, str):
            if ":" not in features and features in catalog.services:
                service = catalog.services[features]
                refs = list(service.features)
            else:
                refs = [features]
        else:
            refs = list(features)
        if not refs:
            raise InvalidInputError("no features were asked for; pass a feature service or ['view:feature', ...]")
        return catalog, catalog.resolve(refs), service

    # -- training sets -----------------------------------------------------------------------

    def training_set(
        self,
        entity_df: Any,
        features: Refs,
        *,
        as_of: datetime | None = None,
        timestamp_column: str = "event_timestamp",
        name: str | None = None,
        run_id: str | None = None,
    ) -> pa.Table:
        """The entity rows with every feature as it was known at each row's timestamp.

        ``features`` is a feature service (object or name) or references (``"view:feature"``,
        ``"view:*"``, on-demand names); on-demand features are computed by the same function
        serving uses, over the joined columns and the entity rows' request fields. The result
        is registered as a data set version (``name``, by default the service's name or
        ``training_set``) whose lineage names every definition version and the fingerprints of
        the data read. ``run_id`` names the run that trains on it (a pipeline step passes
        ``ctx.run_id``), linked in the same transaction, as ``run.log_dataset(train, name=...)``
        with the same name would: a model version registered from that run is then bound to the
        feature service automatically (see :meth:`ModelRegistry.register`).
        """
        from lockgate.features import _training

        if run_id is not None:
            with self._db.read() as conn:
                if self._runs.resolve_id(conn, run_id) != [run_id]:
                    raise NotFoundError(
                        f"run '{run_id}' does not exist, so no training set can be linked to it; "
                        "see: lockgate runs list --all"
                    )
        catalog, resolved, service = self._resolve(features)
        entity = to_arrow(entity_df)
        on_demand = [self._function(catalog.on_demand_feature(f.name)) for f in resolved if not f.view]
        requests = _training.requests_for(catalog, resolved)
        self._computed.refresh([view for view, _ in requests])
        # Fingerprinted before the join: lineage names the data as it was when the join began.
        inputs = _training.sources(self.offline_store, catalog, resolved, requests, service)
        table = _training.build(
            self.offline_store, entity, resolved, requests, on_demand, as_of=as_of, timestamp_column=timestamp_column
        )
        stored, content_hash, sha, size = self._datasets.prepare(table)
        with self._db.write() as conn:
            version = self._datasets.register(
                conn,
                name=name or (service.name if service is not None else "training_set"),
                table=stored,
                content_hash=content_hash,
                artifact=(sha, size),
                source_uri=None,
            )
            edges = [
                LineageEdge(
                    src_kind=kind, src_id=node, relation=relation, dst_kind=NodeKind.DATASET, dst_id=version.node_id
                )
                for kind, node, relation in inputs
            ]
            if run_id is not None:
                edges.append(
                    LineageEdge(
                        src_kind=NodeKind.DATASET,
                        src_id=version.node_id,
                        relation="input:features",
                        dst_kind=NodeKind.RUN,
                        dst_id=run_id,
                    )
                )
            self._lineage.record(conn, edges)
        return table

    # -- materialization and pushes ----------------------------------------------------------

    def materialize(
        self,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        views: Sequence[str] | None = None,
        progress: MaterializeProgress | None = None,
    ) -> MaterializeReport:
        """Compute the computed views into the offline store, then bring each online view's
        store up to ``end`` (now by default) from where its last materialization stopped
        (``start`` overrides that).

        Every computed view is computed before anything is written, so a failing query writes
        nothing; each view's online values and watermark then move together or not at all.
        """
        end = end or datetime.now(UTC)
        catalog = self.registry.current()
        chosen = [catalog.view(v) for v in views] if views is not None else list(catalog.views.values())

        def computing(view: str) -> None:
            if progress is not None:
                progress(view, 0, None)

        computed = self._computed.refresh(chosen, on_compute=computing)
        results = []
        for view in chosen:
            if not view.online:
                continue
            dataset = self.offline_store.scan(view)
            total = dataset.count_rows()
            if progress is not None:
                progress(view.name, 0, total)
            before = self.online_store.get_watermark(view)
            if start is not None:
                self.online_store.set_watermark(view, start)
            report = _progress(progress, view.name, total)
            try:
                results.append(
                    self.online_store.materialize(view, dataset.scanner().to_reader(), end=end, progress=report)
                )
            except BaseException:
                if start is not None:  # a failed run leaves the watermark where it was
                    self.online_store.set_watermark(view, before)
                raise
            if progress is not None:
                progress(view.name, total, total)
        return MaterializeReport(end=end, computed=computed, views=results)

    def push(self, view: str, rows: Any) -> PushResult:
        """Add rows to a view: logged in the offline store (training sees them) and written to the
        online store (serving sees them) when they are newer than what it holds.

        The rows are checked against the view first; if the online write fails, the offline
        log entry is removed again, so a push lands in both stores or in neither.
        """
        definition = self.registry.current().view(view)
        table = to_arrow(rows)
        uri = self.offline_store.append_pushed(definition, table)
        written = None
        if definition.online:
            try:
                written = self.online_store.write(definition, table)
            except BaseException as failed:
                try:
                    _remove(uri, self._s3_endpoint_url)
                except Exception as cleanup:  # noqa: BLE001 - the online failure is what the user must see
                    failed.add_note(
                        f"the pushed rows could not be removed from the offline log ({uri}: {cleanup}); "
                        "delete that file before training on this view"
                    )
                raise
        return PushResult(view=view, rows=table.num_rows, offline_uri=uri, online_written=written)

    # -- serving -----------------------------------------------------------------------------

    def online(
        self,
        features: Refs,
        entity_rows: Any,
        *,
        now: datetime | None = None,
        policy: StalePolicy | None = None,
    ) -> OnlineResult:
        """The online values of ``features`` (a service or references) for each entity row, with
        their age and status; on-demand features are computed from the request's fields (in the
        entity rows) and the values read. ``policy`` overrides the views' stale policies."""
        from lockgate.features._lookup import entity_rows as as_rows
        from lockgate.features._lookup import lookup

        catalog, resolved, _ = self._resolve(features)
        functions = {f.name: self._function(catalog.on_demand_feature(f.name)) for f in resolved if not f.view}
        rows = as_rows(entity_rows)
        return lookup(
            self.online_store, catalog, resolved, rows, functions, now=now or datetime.now(UTC), policy=policy
        )

    # -- freshness and skew ------------------------------------------------------------------

    def freshness(self, *, now: datetime | None = None, views: Sequence[str] | None = None) -> FreshnessReport:
        """Each view's newest event against its ``freshness_sla``; ``report.check()`` makes it a gate."""
        now = now or datetime.now(UTC)
        catalog = self.registry.current()
        chosen = [catalog.view(v) for v in views] if views is not None else list(catalog.views.values())
        found = []
        for view in chosen:
            dataset = self._rows_of(view)
            latest = latest_event(dataset, view.source.event_time) if dataset is not None else None
            through = self.online_store.get_watermark(view) if view.online and self._online_exists() else None
            sla = view.freshness_sla if isinstance(view.freshness_sla, timedelta) else None
            found.append(ViewFreshness.judge(view.name, latest=latest, sla=sla, now=now, materialized_through=through))
        return FreshnessReport(views=found, now=now)

    def _rows_of(self, view: FeatureView) -> Any:
        """A view's offline rows (a computed view not computed yet: its raw events); None when it has none."""
        store = self.offline_store
        try:
            if view.computed and not store.has_computed(view):
                return store.source_files(view).dataset()
            return store.scan(view)
        except NotFoundError:
            return None

    def _online_exists(self) -> bool:
        # Freshness must not create an empty online database just to say nothing was materialized.
        return self._online is not None or bool(self._online_url) or (self._home / "online.db").exists()

    def skew(
        self,
        view: str,
        *,
        sample: int = 1000,
        payload: Any | None = None,
        now: datetime | None = None,
        psi_max: float = 0.2,
        ks_alpha: float = 0.01,
    ) -> SkewReport:
        """Compare the online store with the offline data for up to ``sample`` entities of ``view``.

        For each entity, its offline value as of ``now`` (the point-in-time rules, ttl included)
        is compared with what the online store serves (a value past its ttl counts as missing,
        as offline); per feature the report gives PSI and a KS test, failing a feature past
        ``psi_max`` or below ``ks_alpha``. ``payload`` (a row of fields, or rows) is also
        checked against the definitions. ``report.check()`` makes it a gate.
        """
        from lockgate.features._offline import point_in_time_join
        from lockgate.features._skew import SkewReport, compare_feature, validate_payload

        if sample < 1:
            raise InvalidInputError(f"sample must be at least 1, not {sample}")
        now = now or datetime.now(UTC)
        catalog = self.registry.current()
        definition = catalog.view(view)
        if not definition.online:
            raise InvalidInputError(
                f"feature view '{view}' is declared online=False; it has no online values to compare"
            )
        dataset = self.offline_store.scan(definition)
        keys = _sample_keys(dataset, definition.join_keys, sample)
        problems = None
        if payload is not None:
            key_types = {k: dataset.schema.field(k).type for k in definition.join_keys}
            problems = validate_payload(definition, payload, catalog, key_types=key_types)
        features = definition.feature_names
        results = []
        if keys.num_rows:
            # The lookup time must be of the kind the view's times are: aware, or naive UTC.
            aware = dataset.schema.field(definition.source.event_time).type.tz is not None
            stamp = now.astimezone(UTC) if aware else now.astimezone(UTC).replace(tzinfo=None)
            at = pa.array([stamp] * keys.num_rows, pa.timestamp("us", tz="UTC" if aware else None))
            entity = keys.append_column("lg_now", at)
            offline = point_in_time_join(
                entity, [(definition, features)], timestamp_column="lg_now", store=self.offline_store
            )
            answer = self.online_store.read(definition, keys, features, now=now, policy="last_known")
            type_names = feature_type_names(definition)
            for name in features:
                dtype = definition.feature_types[name]
                # Past its ttl a value is missing offline (the point-in-time rule); so online too.
                served = [row.values[name] if row.status == "fresh" else None for row in answer.rows]
                results.append(
                    compare_feature(
                        name,
                        dtype,
                        offline.column(name).combine_chunks(),
                        pa.array(served, type=dtype),
                        psi_max=psi_max,
                        ks_alpha=ks_alpha,
                        type_name=type_names[name],
                    )
                )
        return SkewReport(
            view=view,
            version=definition.version,
            entities=keys.num_rows,
            features=results,
            payload=problems,
            psi_max=psi_max,
            ks_alpha=ks_alpha,
            now=now,
        )


# -- helpers -------------------------------------------------------------------------------------


def _progress(progress: MaterializeProgress | None, view: str, total: int) -> Callable[[int, int], None] | None:
    if progress is None:
        return None

    def report(rows_read: int, written: int) -> None:
        progress(view, rows_read, total)

    return report


def _sample_keys(dataset: Any, keys: list[str], sample: int) -> pa.Table:
    """Up to ``sample`` distinct entities of a view, the same ones every time for the same data."""
    import numpy as np

    distinct = dataset.to_table(columns=keys).group_by(keys).aggregate([])
    if distinct.num_rows <= sample:
        return distinct.select(keys)
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(distinct.num_rows, size=sample, replace=False))
    return distinct.select(keys).take(pa.array(picked))


def _remove(uri: str, s3_endpoint_url: str | None) -> None:
    """Delete a file the offline store just wrote (a push whose online write failed)."""
    if uri.startswith("s3://"):
        from lockgate.features._offline_files import Location

        Location(s3_endpoint_url=s3_endpoint_url).s3fs().rm(uri)
    else:
        Path(uri).unlink(missing_ok=True)


def _functions_file(catalog: Catalog) -> str | None:
    """The one file the catalog's on-demand functions are defined in, if they share one: where
    another process (a server) imports them from when it meets the registered feature."""
    import inspect

    files = set()
    for od in catalog.on_demand.values():
        if isinstance(od, OnDemandFeature):
            try:
                files.add(inspect.getsourcefile(od.function))
            except TypeError:  # a builtin or C function has no file
                return None
    if len(files) != 1:
        return None
    (found,) = files
    return str(Path(found).resolve()) if found else None

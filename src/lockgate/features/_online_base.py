"""What every online store backend shares: the layout of a view, entity-key checks, the read
answer with ttl and stale policy, and the reduction of input rows to the latest per entity.

A backend implements five small methods (``_fetch``, ``_upsert``, ``_get_watermark``,
``_set_watermark``, ``drop``) over its own storage; reads, writes and materialization are
written once here, so SQLite and Redis answer alike.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from lockgate.errors import InvalidInputError
from lockgate.features._definitions import FeatureView, StalePolicy
from lockgate.features._online_results import (
    FeatureStatus,
    MaterializeResult,
    OnlineCounters,
    OnlineFeatures,
    OnlineRow,
    StaleFeatures,
)

__all__ = [
    "CT",
    "ET",
    "EntityKeys",
    "OnlineStoreBase",
    "Progress",
    "Rows",
    "ViewLayout",
    "from_micros",
    "quote",
    "to_micros",
]

EntityKeys: TypeAlias = Sequence[Mapping[str, Any]] | pa.Table | pa.RecordBatch
Rows: TypeAlias = pa.Table | pa.RecordBatch | pa.RecordBatchReader | Iterable[pa.RecordBatch]
Progress: TypeAlias = Callable[[int, int], None]
"""Called as ``progress(rows_read, entities_written)`` while a materialization runs."""

# Stored beside the features under names no feature can have (feature names are identifiers).
ET = "@et"
CT = "@ct"
_N = "@n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_POLICIES = ("fail_closed", "default", "last_known")
# Rows are built by tuple.__new__ directly: a NamedTuple's own __new__ is a Python frame, and
# a 100-entity read builds 100 of them.
_new_row = tuple.__new__
# Every reader of a view shares its layout; the cap only bounds callers that rebuild views per call.
_LAYOUT_CACHE_SIZE = 1024

_DUCK_CASTS: dict[pa.DataType, str] = {
    pa.bool_(): "BOOLEAN",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
}


def to_micros(ts: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken as UTC, the clock lockgate records in."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _US


def from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(0, 0, us)


def quote(name: str) -> str:
    """An identifier quoted for SQLite and DuckDB alike."""
    return '"' + name.replace('"', '""') + '"'


class ViewLayout:
    """One version of a feature view as the online store sees it, worked out once."""

    def __init__(self, view: FeatureView) -> None:
        if not view.online:
            raise InvalidInputError(f"feature view '{view.name}' is declared online=False; it has no online values")
        self.view = view
        self.name = view.name
        self.version = view.version
        self.keys = tuple(view.join_keys)
        self.single_key = len(self.keys) == 1
        self.features = tuple(view.feature_names)
        self.feature_set = frozenset(self.features)
        self.types: dict[str, pa.DataType] = view.feature_types
        self.ttl_us = view.ttl_delta // _US
        self.event_time = view.source.event_time
        self.created_time = view.source.created_time
        self._checked: dict[tuple[str, ...], tuple[str, ...]] = {}

    def check_features(self, features: Sequence[str] | None) -> tuple[str, ...]:
        """The requested features as a tuple, each one a feature of this view."""
        if features is None:
            return self.features
        if isinstance(features, str):
            features = (features,)
        key = tuple(features)
        checked = self._checked.get(key)
        if checked is None:
            if not key:
                raise InvalidInputError(f"no feature of view '{self.name}' was requested; name at least one")
            unknown = [f for f in key if f not in self.feature_set]
            if unknown:
                raise InvalidInputError(
                    f"feature view '{self.name}' has no feature {unknown[0]!r}; its features are {', '.join(self.features)}"
                )
            checked = self._checked[key] = key
        return checked

    def defaults_for(self, features: tuple[str, ...]) -> dict[str, Any]:
        missing = [f for f in features if f not in self.view.defaults]
        if missing:
            raise InvalidInputError(
                f"the 'default' policy needs a default for every requested feature, and feature view "
                f"'{self.name}' has none for {missing[0]!r}; add it to defaults= or choose another policy"
            )
        return {f: self.view.defaults[f] for f in features}

    def entity_keys(self, entity_keys: EntityKeys) -> list[Any]:
        """The key of each requested entity: the value itself for a one-key view, else a tuple."""
        if isinstance(entity_keys, pa.Table | pa.RecordBatch):
            absent = [k for k in self.keys if k not in entity_keys.column_names]
            if absent:
                self._no_key(absent[0], entity_keys.column_names)
            columns = [entity_keys.column(k).to_pylist() for k in self.keys]
            keys: list[Any] = columns[0] if self.single_key else list(zip(*columns, strict=True))
        elif isinstance(entity_keys, Mapping | str | bytes):
            raise InvalidInputError(
                f"entity keys for view '{self.name}' must be a list of rows like [{{{self.keys[0]!r}: ...}}] or an Arrow table"
            )
        else:
            try:
                if self.single_key:
                    (name,) = self.keys
                    keys = [row[name] for row in entity_keys]
                else:
                    keys = [tuple(row[k] for k in self.keys) for row in entity_keys]
            except KeyError as exc:
                row = next(r for r in entity_keys if any(k not in r for k in self.keys))
                self._no_key(str(exc.args[0]), list(row))
            except TypeError:
                raise InvalidInputError(
                    f"each entity row for view '{self.name}' must be a mapping of {', '.join(self.keys)} to values"
                ) from None
        if None in keys or (not self.single_key and any(None in k for k in keys)):
            raise InvalidInputError(f"an entity row for view '{self.name}' has a null {', '.join(self.keys)}")
        return keys

    def _no_key(self, key: str, given: Iterable[str]) -> NoReturn:
        names = ", ".join(repr(g) for g in given) or "nothing"
        raise InvalidInputError(
            f"feature view '{self.name}' is looked up by {', '.join(self.keys)}; an entity row lacks {key!r} (it has {names})"
        )


class OnlineStoreBase:
    """Reads, writes and materialization over a backend's five primitives."""

    backend: ClassVar[str]
    url: str
    retry_after: int = 60
    """Seconds a client is told to wait when a ``fail_closed`` view refuses a read."""

    def __init__(self) -> None:
        self.counters = OnlineCounters()
        self._layouts: dict[int, ViewLayout] = {}

    # -- what a backend implements --------------------------------------------------------------

    def _fetch(self, layout: ViewLayout, keys: list[Any], features: tuple[str, ...]) -> list[Sequence[Any] | None]:
        """Per key, in order, None if absent, else the values of ``features`` followed by the
        event time in microseconds (anything after that is ignored)."""
        raise NotImplementedError

    def _upsert(self, layout: ViewLayout, latest: pa.Table, *, watermark_us: int | None, progress: Progress) -> int:
        """Store the latest rows (columns: join keys, ET, CT, features) where they are newer than
        what is stored; set the watermark when given, only once every row is in. Returns how
        many entities changed."""
        raise NotImplementedError

    def _get_watermark(self, layout: ViewLayout) -> int | None:
        raise NotImplementedError

    def _set_watermark(self, layout: ViewLayout, us: int | None) -> None:
        raise NotImplementedError

    def drop(self, view: FeatureView) -> None:
        """Delete the stored values and the watermark of this version of the view."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; the store is not usable afterwards."""

    # -- shared -----------------------------------------------------------------------------------

    def layout(self, view: FeatureView) -> ViewLayout:
        # Keyed by identity: hashing the definition (its version) on every read would cost more
        # than the lookup itself.
        layout = self._layouts.get(id(view))
        if layout is not None and layout.view is view:
            return layout
        if not isinstance(view, FeatureView):
            raise InvalidInputError(f"expected a FeatureView, got {type(view).__name__}")
        layout = ViewLayout(view)
        if len(self._layouts) >= _LAYOUT_CACHE_SIZE:
            self._layouts.clear()
        self._layouts[id(view)] = layout
        return layout

    def read(
        self,
        view: FeatureView,
        entity_keys: EntityKeys,
        features: Sequence[str] | None = None,
        *,
        now: datetime | None = None,
        policy: StalePolicy | None = None,
    ) -> OnlineFeatures:
        """The stored values of ``features`` (all of the view's by default) for each entity.

        Each row carries its event time, its age at ``now`` (the current time by default) and a
        status; values older than the view's ttl are stale, and ``policy`` (the view's
        ``stale_policy`` by default) says what happens to stale and missing values: ``fail_closed``
        raises :class:`StaleFeatures`, ``default`` answers the view's defaults, ``last_known``
        answers the stored value flagged ``stale``.
        """
        layout = self.layout(view)
        feats = layout.check_features(features)
        policy = policy or view.stale_policy
        if policy not in _POLICIES:
            raise InvalidInputError(f"stale policy {policy!r} is not one of {', '.join(_POLICIES)}")
        defaults = layout.defaults_for(feats) if policy == "default" else None
        keys = layout.entity_keys(entity_keys)
        if now is None:
            now = datetime.now(UTC)
        now_us = to_micros(now)
        records = self._fetch(layout, keys, feats) if keys else []

        ttl_us = layout.ttl_us
        width = len(feats)
        rows: list[OnlineRow] = []
        append = rows.append
        fresh = stale = missing = 0
        for key, rec in zip(keys, records, strict=True):
            if rec is None:
                missing += 1
                append(_new_row(OnlineRow, (key, dict.fromkeys(feats), None, None, "missing")))
                continue
            et = rec[width]
            age_us = now_us - et
            status: FeatureStatus
            if age_us <= ttl_us:
                fresh += 1
                status = "fresh"
            else:
                stale += 1
                status = "stale"
            # zip stops at the features: the event time (and any key) follow them in rec.
            values = dict(zip(feats, rec))  # noqa: B905
            append(_new_row(OnlineRow, (key, values, _EPOCH + timedelta(0, 0, et), age_us / 1e6, status)))
        defaulted = 0
        if stale or missing:
            if policy == "fail_closed":
                self.counters.add(
                    layout.name, fresh * width, stale * width, missing * width, 0, (stale + missing) * width
                )
                raise self._refusal(layout, rows, missing)
            if defaults is not None:
                defaulted = stale + missing
                for i, row in enumerate(rows):
                    if row.status != "fresh":
                        rows[i] = OnlineRow(row.key, dict(defaults), row.event_time, row.age, "default")
        self.counters.add(layout.name, fresh * width, stale * width, missing * width, defaulted * width, 0)
        return OnlineFeatures(layout.name, feats, rows, now)

    def _refusal(self, layout: ViewLayout, rows: list[OnlineRow], missing: int) -> StaleFeatures:
        bad = [row for row in rows if row.status != "fresh"]
        ages = [row.age for row in bad if row.age is not None]
        return StaleFeatures(
            layout.name,
            [row.key for row in bad],
            max(ages) if ages else None,
            ttl=layout.ttl_us / 1e6,
            missing=missing,
            retry_after=self.retry_after,
        )

    def write(self, view: FeatureView, table: Rows) -> int:
        """Store the latest row per entity of ``table`` where it is newer than the stored value
        (the push path); returns how many entities changed. The watermark does not move."""
        layout = self.layout(view)
        latest, _, _, _ = _latest_per_entity(layout, table, lo=None, hi=None, progress=None)
        return self._upsert(layout, latest, watermark_us=None, progress=_no_progress)

    def materialize(
        self, view: FeatureView, rows: Rows, *, end: datetime, progress: Progress | None = None
    ) -> MaterializeResult:
        """Bring the online store up to ``end`` from the view's offline rows, incrementally.

        Only rows after the watermark and up to ``end`` count: by their created time when the
        rows carry the view's ``created_time`` column (so rows that land late are still picked
        up), else by their event time. The latest of them per entity is written where newer
        than the stored value, then the watermark moves to ``end``. Running it again with the
        same ``end`` reads nothing. ``rows`` may be a table or a stream of record batches, which
        is consumed once and never held whole.
        """
        layout = self.layout(view)
        end_us = to_micros(end)
        start_us = self._get_watermark(layout)
        start = from_micros(start_us) if start_us is not None else None
        if start_us is not None and end_us <= start_us:
            return MaterializeResult(layout.name, layout.version, start, start, 0, 0, 0, 0)
        report = progress or _no_progress
        latest, read, in_window, skipped = _latest_per_entity(layout, rows, lo=start_us, hi=end_us, progress=report)
        written = self._upsert(
            layout, latest, watermark_us=end_us, progress=lambda done, written: report(read, written)
        )
        return MaterializeResult(
            layout.name, layout.version, start, from_micros(end_us), read, in_window, latest.num_rows, written, skipped
        )

    def get_watermark(self, view: FeatureView) -> datetime | None:
        """Where the last materialization of this version of the view stopped (inclusive)."""
        us = self._get_watermark(self.layout(view))
        return None if us is None else from_micros(us)

    def set_watermark(self, view: FeatureView, ts: datetime | None) -> None:
        """Move the watermark by hand; None makes the next materialization read everything."""
        self._set_watermark(self.layout(view), None if ts is None else to_micros(ts))

    def __enter__(self) -> OnlineStoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_progress(rows_read: int, written: int) -> None:
    return None


# -- input rows → the latest row per entity ------------------------------------------------------


def _as_batches(rows: Rows) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    if isinstance(rows, pa.Table):
        return rows.schema, iter(rows.to_batches(max_chunksize=65_536))
    if isinstance(rows, pa.RecordBatch):
        return rows.schema, iter([rows])
    if isinstance(rows, pa.RecordBatchReader):
        return rows.schema, iter(rows)
    iterator: Iterator[Any] = iter(rows)
    first = next(iterator, None)
    if first is None:
        return None, iter(())
    if isinstance(first, pa.Table):
        batches = itertools.chain.from_iterable(t.to_batches() for t in itertools.chain([first], iterator))
        return first.schema, batches
    if not isinstance(first, pa.RecordBatch):
        raise InvalidInputError(f"rows must be an Arrow table or record batches, not {type(first).__name__}")
    return first.schema, itertools.chain([first], iterator)


def _empty_latest(layout: ViewLayout) -> pa.Table:
    fields = [pa.field(k, pa.null()) for k in layout.keys]
    fields += [pa.field(ET, pa.int64()), pa.field(CT, pa.int64())]
    fields += [pa.field(f, _stored_type(layout.types[f])) for f in layout.features]
    return pa.schema(fields).empty_table()


def _stored_type(t: pa.DataType) -> pa.DataType:
    return pa.int64() if pa.types.is_timestamp(t) else t


def _latest_per_entity(
    layout: ViewLayout, rows: Rows, *, lo: int | None, hi: int | None, progress: Progress | None
) -> tuple[pa.Table, int, int, int]:
    """The latest row per entity (by event time, then created time) among ``rows`` whose
    window time is in ``(lo, hi]``, as ``(table, rows_read, rows_in_window, skipped_null_keys)``.

    One streaming DuckDB aggregation: memory holds one row per entity, not the input.
    """
    schema, batches = _as_batches(rows)
    if schema is None:
        return _empty_latest(layout), 0, 0, 0
    names = set(schema.names)
    needed = [*layout.keys, layout.event_time, *layout.features]
    absent = [c for c in needed if c not in names]
    if absent:
        raise InvalidInputError(
            f"the rows for feature view '{layout.name}' lack the column {absent[0]!r}; they need {', '.join(needed)}"
        )
    et_type = schema.field(layout.event_time).type
    if not (pa.types.is_timestamp(et_type) or pa.types.is_date(et_type)):
        raise InvalidInputError(
            f"the event time column {layout.event_time!r} of feature view '{layout.name}' holds {et_type}, not timestamps"
        )
    has_ct = layout.created_time is not None and layout.created_time in names

    read = [0]
    failure: list[BaseException] = []

    def counted() -> Iterator[pa.RecordBatch]:
        # An error from the caller's stream (an offline scan failing) must reach the caller as
        # itself, not as DuckDB's wrapping of it.
        try:
            for batch in batches:
                read[0] += batch.num_rows
                if progress is not None:
                    progress(read[0], 0)
                yield batch
        except Exception as exc:
            failure.append(exc)
            raise

    et = f"epoch_us({quote(layout.event_time)})"
    ct = f"coalesce(epoch_us({quote(layout.created_time)}), 0)" if has_ct and layout.created_time else "0"
    window = ct if has_ct else et
    selected = [quote(k) for k in layout.keys] + [f"{et} AS {quote(ET)}", f"{ct} AS {quote(CT)}"]
    for name in layout.features:
        t = layout.types[name]
        expr = f"epoch_us({quote(name)})" if pa.types.is_timestamp(t) else f"CAST({quote(name)} AS {_DUCK_CASTS[t]})"
        selected.append(f"{expr} AS {quote(name)}")
    keys = ", ".join(quote(k) for k in layout.keys)
    packed = ", ".join(quote(c) for c in (ET, CT, *layout.features))
    sql = (
        f"SELECT {keys}, {quote(_N)}, unnest(r) FROM ("
        f"SELECT {keys}, count(*) AS {quote(_N)}, max_by(struct_pack({packed}), ({quote(ET)}, {quote(CT)})) AS r "
        f"FROM (SELECT {', '.join(selected)} FROM src WHERE {et} IS NOT NULL "
        f"AND ($lo IS NULL OR {window} > $lo) AND ($hi IS NULL OR {window} <= $hi)) "
        f"GROUP BY {keys}) ORDER BY {keys}"
    )
    import duckdb  # only writes need it: importing lockgate stays light

    con = duckdb.connect()
    try:
        con.register("src", pa.RecordBatchReader.from_batches(schema, counted()))
        table = con.sql(sql, params={"lo": lo, "hi": hi}).to_arrow_table()
    except duckdb.Error as exc:
        if failure:
            raise failure[0] from None
        first = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"the rows for feature view '{layout.name}' do not fit its definition: {first}"
        ) from None
    finally:
        con.close()
    if failure:
        raise failure[0]
    counts = table.column(_N)
    in_window = int(pc.sum(counts).as_py() or 0)
    null_key = pc.is_null(table.column(layout.keys[0]))
    for k in layout.keys[1:]:
        null_key = pc.or_(null_key, pc.is_null(table.column(k)))
    skipped = int(pc.sum(pc.filter(counts, null_key)).as_py() or 0)
    table = table.drop_columns([_N])
    if skipped:
        table = table.filter(pc.invert(null_key))
    return table, read[0], in_window, skipped

"""Feature definitions: one description of each feature, used by training and by serving.

>>> from datetime import timedelta
>>> card = Entity("card", join_keys=["card_id"])
>>> aggregates = FeatureView(
...     name="card_aggregates",
...     entities=[card],
...     ttl=timedelta(days=7),
...     source=ParquetSource("data/transactions/", event_time="ts"),
...     aggregations=[Count("transaction_id", window="1h"), Mean("amount", window="7d", name="avg_amount_7d")],
... )
>>> aggregates.feature_names
['transaction_id_count_1h', 'avg_amount_7d']
>>> parse_feature_ref("card_aggregates:avg_amount_7d")
('card_aggregates', 'avg_amount_7d')

Definitions are plain frozen values; each has a ``version``, the hash of its canonical form,
so the registry can tell what changed and lineage can name exactly what built a training set.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

import pyarrow as pa

from lockgate.clock import format_duration, parse_duration
from lockgate.errors import InvalidInputError
from lockgate.hashing import canonical_json, sha256_bytes

__all__ = [
    "Aggregation",
    "Count",
    "CountDistinct",
    "Entity",
    "FeatureService",
    "FeatureView",
    "Max",
    "Mean",
    "Min",
    "OnDemandFeature",
    "ParquetSource",
    "StalePolicy",
    "Sum",
    "arrow_type",
    "on_demand_feature",
    "parse_feature_ref",
]

StalePolicy = Literal["fail_closed", "default", "last_known"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_TYPES: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(f"{kind} name {name!r} must start with a letter or '_' and hold letters, digits, '_'")
    return name


def arrow_type(name: str) -> pa.DataType:
    """The Arrow type of a feature type name (``int64``, ``float64``, ``string``, ``bool``, …)."""
    try:
        return _TYPES[name]
    except KeyError:
        raise InvalidInputError(f"unknown feature type {name!r}; use one of: {', '.join(_TYPES)}") from None


def parse_feature_ref(ref: str) -> tuple[str, str]:
    """``"view:feature"`` (or ``"view:*"``) as ``(view, feature)``; an on-demand feature is
    referenced by its bare name and comes back as ``("", name)``."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInputError(f"feature reference {ref!r} is empty; write 'view:feature' or an on-demand name")
    view, sep, name = ref.partition(":")
    if not sep:
        return "", _check_name("on-demand feature", ref)
    if name != "*":
        _check_name("feature", name)
    return _check_name("feature view", view), name


class _Definition:
    """What every definition shares: a canonical form and a version hashed from it."""

    kind: ClassVar[str]
    name: str

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def version(self) -> str:
        """The first 16 hex digits of the sha256 of the canonical definition."""
        return sha256_bytes(canonical_json({"kind": self.kind, **self.spec()}))[:16]


# -- entities and sources ---------------------------------------------------------------------


@dataclass(frozen=True)
class Entity(_Definition):
    """What features describe (a card, a merchant), identified by its join keys."""

    kind: ClassVar[str] = "entity"
    name: str
    join_keys: list[str]
    description: str | None = None

    def __post_init__(self) -> None:
        _check_name("entity", self.name)
        if not self.join_keys:
            raise InvalidInputError(f"entity '{self.name}' needs at least one join key, e.g. join_keys=['card_id']")
        for key in self.join_keys:
            _check_name("join key", key)

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "join_keys": list(self.join_keys), "description": self.description}


@dataclass(frozen=True)
class ParquetSource:
    """Parquet files (one file, a folder of partitions, local or ``s3://``) with an event-time
    column and optionally the time each row was created (written) upstream.

    ``contract`` names the data contract the files are under (``"transactions"``, or
    ``"transactions@2"`` for one version): the view then counts as a consumer of its columns,
    and a contract version that drops or retypes one is refused.
    """

    path: str
    event_time: str
    created_time: str | None = None
    contract: str | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise InvalidInputError("a ParquetSource needs a path, e.g. ParquetSource('data/transactions/', ...)")
        _check_name("event time column", self.event_time)
        if self.created_time is not None:
            _check_name("created time column", self.created_time)

    def spec(self) -> dict[str, Any]:
        found = {"type": "parquet", "path": self.path, "event_time": self.event_time, "created_time": self.created_time}
        if self.contract is not None:  # left out when unset, so versions of views without one stay as they were
            found["contract"] = self.contract
        return found


# -- aggregations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Aggregation:
    """A windowed aggregate per entity over raw events, e.g. ``Mean("amount", window="7d")``.

    The value at time t aggregates the entity's events with event time in (t - window, t].
    """

    function: ClassVar[str] = ""
    column: str
    window: timedelta | str
    name: str | None = None
    output_type: ClassVar[str] = "float64"

    def __post_init__(self) -> None:
        _check_name("aggregated column", self.column)
        window = parse_duration(self.window)
        if window <= timedelta(0):
            raise InvalidInputError(f"{type(self).__name__}({self.column!r}): the window must be longer than zero")
        object.__setattr__(self, "window", window)
        if self.name is not None:
            _check_name("feature", self.name)

    @property
    def window_delta(self) -> timedelta:
        assert isinstance(self.window, timedelta)
        return self.window

    @property
    def feature_name(self) -> str:
        return self.name or f"{self.column}_{self.function}_{format_duration(self.window_delta)}"

    def spec(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "column": self.column,
            "window": format_duration(self.window_delta),
            "name": self.feature_name,
        }


@dataclass(frozen=True)
class Count(Aggregation):
    function: ClassVar[str] = "count"
    output_type: ClassVar[str] = "int64"


@dataclass(frozen=True)
class CountDistinct(Aggregation):
    function: ClassVar[str] = "count_distinct"
    output_type: ClassVar[str] = "int64"


@dataclass(frozen=True)
class Sum(Aggregation):
    function: ClassVar[str] = "sum"


@dataclass(frozen=True)
class Mean(Aggregation):
    function: ClassVar[str] = "mean"


@dataclass(frozen=True)
class Min(Aggregation):
    function: ClassVar[str] = "min"


@dataclass(frozen=True)
class Max(Aggregation):
    function: ClassVar[str] = "max"


# -- feature views ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureView(_Definition):
    """Features of one or more entities, from a source, valid for ``ttl`` after their event time.

    Give exactly one of:
    - ``features``: the source already holds them (name → type);
    - ``aggregations``: lockgate computes them from raw events in the source (DuckDB);
    - ``sql`` with ``features``: a DuckDB query over the source (named ``source``) that yields
      the join keys, the event time and the features.

    ``freshness_sla`` is how old the newest event may be before the view counts as stale;
    ``stale_policy`` says what online reads do with values older than ``ttl``: ``fail_closed``
    (an error; the server answers 503), ``default`` (the ``defaults``), or ``last_known``
    (served, flagged stale).
    """

    kind: ClassVar[str] = "feature_view"
    name: str
    entities: list[Entity]
    ttl: timedelta | str
    source: ParquetSource
    features: dict[str, str] = field(default_factory=dict)
    aggregations: list[Aggregation] = field(default_factory=list)
    sql: str | None = None
    owner: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    freshness_sla: timedelta | str | None = None
    stale_policy: StalePolicy = "last_known"
    defaults: dict[str, Any] = field(default_factory=dict)
    online: bool = True

    def __post_init__(self) -> None:
        _check_name("feature view", self.name)
        label = f"feature view '{self.name}'"
        if not self.entities:
            raise InvalidInputError(f"{label} needs at least one entity")
        ttl = parse_duration(self.ttl)
        if ttl <= timedelta(0):
            raise InvalidInputError(f"{label}: ttl must be longer than zero")
        object.__setattr__(self, "ttl", ttl)
        if self.freshness_sla is not None:
            object.__setattr__(self, "freshness_sla", parse_duration(self.freshness_sla))
        kinds = [bool(self.aggregations), self.sql is not None, bool(self.features) and self.sql is None]
        if sum(kinds) != 1:
            raise InvalidInputError(
                f"{label} needs exactly one of features=, aggregations= or sql= (with features= for its output types)"
            )
        if self.sql is not None and not self.features:
            raise InvalidInputError(f"{label}: sql= needs features= naming the query's feature columns and types")
        for name, type_name in self.features.items():
            _check_name("feature", name)
            arrow_type(type_name)
        names = self.feature_names
        if len(names) != len(set(names)):
            raise InvalidInputError(f"{label} defines a feature twice; give each aggregation its own name")
        reserved = {*self.join_keys, self.source.event_time, self.source.created_time}
        clash = sorted(set(names) & {r for r in reserved if r})
        if clash:
            raise InvalidInputError(
                f"{label}: feature {clash[0]!r} has the name of a join key, the event time or the created time"
            )
        unknown = sorted(set(self.defaults) - set(names))
        if unknown:
            raise InvalidInputError(f"{label}: defaults name {unknown[0]!r}, which is not one of its features")
        if self.stale_policy not in ("fail_closed", "default", "last_known"):
            raise InvalidInputError(f"{label}: stale_policy must be fail_closed, default or last_known")
        if self.stale_policy == "default" and set(self.defaults) != set(names):
            raise InvalidInputError(f"{label}: stale_policy='default' needs defaults= for every feature")

    @property
    def ttl_delta(self) -> timedelta:
        assert isinstance(self.ttl, timedelta)
        return self.ttl

    @property
    def join_keys(self) -> list[str]:
        return [key for entity in self.entities for key in entity.join_keys]

    @property
    def feature_names(self) -> list[str]:
        if self.aggregations:
            return [a.feature_name for a in self.aggregations]
        return list(self.features)

    @property
    def feature_types(self) -> dict[str, pa.DataType]:
        if self.aggregations:
            return {a.feature_name: arrow_type(a.output_type) for a in self.aggregations}
        return {name: arrow_type(t) for name, t in self.features.items()}

    @property
    def computed(self) -> bool:
        """True when lockgate computes the values (aggregations or SQL) rather than reading them."""
        return bool(self.aggregations) or self.sql is not None

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entities": [e.spec() for e in self.entities],
            "ttl": format_duration(self.ttl_delta),
            "source": self.source.spec(),
            "features": dict(self.features),
            "aggregations": [a.spec() for a in self.aggregations],
            "sql": self.sql,
            "owner": self.owner,
            "description": self.description,
            "tags": dict(self.tags),
            "freshness_sla": format_duration(self.freshness_sla) if isinstance(self.freshness_sla, timedelta) else None,
            "stale_policy": self.stale_policy,
            "defaults": dict(self.defaults),
            "online": self.online,
        }


# -- on-demand features -----------------------------------------------------------------------


@dataclass(frozen=True)
class OnDemandFeature(_Definition):
    """A feature computed at request time from request fields and other features, by the same
    vectorized function offline (over a training set's columns) and online (over a request).

    ``inputs`` are request fields (``"amount"``) or feature references (``"view:feature"``);
    the function takes them as keyword arguments named after the field or feature, each a
    ``pyarrow.Array`` (or numpy array), and returns an array of the same length. ``examples``
    pair input values with the expected output and run as unit checks in
    ``lockgate pipeline check``.
    """

    kind: ClassVar[str] = "on_demand_feature"
    name: str
    function: Callable[..., Any]
    inputs: list[str]
    dtype: str = "float64"
    examples: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    description: str | None = None

    def __post_init__(self) -> None:
        _check_name("on-demand feature", self.name)
        arrow_type(self.dtype)
        if not self.inputs:
            raise InvalidInputError(f"on-demand feature '{self.name}' needs inputs=[...]")
        params = set(inspect.signature(self.function).parameters)
        wanted = {self.argument(ref) for ref in self.inputs}
        if wanted != params:
            raise InvalidInputError(
                f"on-demand feature '{self.name}': the function takes {sorted(params)} but inputs name {sorted(wanted)}"
            )

    @staticmethod
    def argument(ref: str) -> str:
        """The function parameter an input is passed as: the feature's or field's own name."""
        view, name = parse_feature_ref(ref) if ":" in ref else ("", ref)
        return name if view else _check_name("request field", ref)

    @property
    def feature_refs(self) -> list[str]:
        return [ref for ref in self.inputs if ":" in ref]

    @property
    def request_fields(self) -> list[str]:
        return [ref for ref in self.inputs if ":" not in ref]

    def spec(self) -> dict[str, Any]:
        try:
            source = inspect.getsource(self.function)
        except (OSError, TypeError):
            source = getattr(self.function, "__qualname__", repr(self.function))
        return {
            "name": self.name,
            "inputs": list(self.inputs),
            "dtype": self.dtype,
            "source": source,
            "examples": [[dict(i), o] for i, o in self.examples],
            "description": self.description,
        }


def on_demand_feature(
    *,
    inputs: Sequence[str],
    dtype: str = "float64",
    examples: Sequence[tuple[dict[str, Any], Any]] = (),
    name: str | None = None,
) -> Callable[[Callable[..., Any]], OnDemandFeature]:
    """Make a vectorized function an on-demand feature (see :class:`OnDemandFeature`)."""

    def wrap(fn: Callable[..., Any]) -> OnDemandFeature:
        return OnDemandFeature(
            name=name or fn.__name__,
            function=fn,
            inputs=list(inputs),
            dtype=dtype,
            examples=list(examples),
            description=(fn.__doc__ or "").strip() or None,
        )

    return wrap


# -- feature services -------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureService(_Definition):
    """The features a model uses, by reference: ``"view:feature"``, ``"view:*"`` or an
    on-demand feature's name. Model versions trained through a service are bound to it, and
    serving resolves their entity lookups through it."""

    kind: ClassVar[str] = "feature_service"
    name: str
    features: list[str]
    description: str | None = None
    owner: str | None = None

    def __post_init__(self) -> None:
        _check_name("feature service", self.name)
        if not self.features:
            raise InvalidInputError(f"feature service '{self.name}' names no feature")
        for ref in self.features:
            parse_feature_ref(ref)

    def spec(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": list(self.features),
            "description": self.description,
            "owner": self.owner,
        }

"""What the online store hands back: values with their age and status, materialization
results, the stale-feature error, and the counters the metrics endpoint reads."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeVar

from lockgate.errors import UnavailableError

__all__ = [
    "EntityRows",
    "FeatureStatus",
    "FeatureValue",
    "MaterializeResult",
    "OnlineCounters",
    "OnlineFeatures",
    "OnlineRow",
    "StaleFeatures",
]

FeatureStatus = Literal["fresh", "stale", "missing", "default"]
"""``fresh``: within the view's ttl; ``stale``: older than the ttl, served as last known;
``missing``: no value stored for the entity; ``default``: the view's configured default, served
in place of a stale or missing value."""


class FeatureValue(NamedTuple):
    """One feature of one entity, with how old it is."""

    value: Any
    event_time: datetime | None
    age: float | None
    """Seconds between the value's event time and the read's ``now``."""
    status: FeatureStatus


class OnlineRow(NamedTuple):
    """One entity's answer from one feature view.

    All features of a view are written together, so they share one event time, age and status.
    With ``status == "default"``, ``event_time`` and ``age`` describe the stored value the
    default replaced (None when nothing was stored).
    """

    key: Any
    """The join key value, or a tuple of them in the view's ``join_keys`` order."""
    values: dict[str, Any]
    event_time: datetime | None
    age: float | None
    status: FeatureStatus

    def feature(self, name: str) -> FeatureValue:
        """One feature's value with its event time, age and status."""
        return FeatureValue(self.values[name], self.event_time, self.age, self.status)


class _ValuesRow(Protocol):
    @property
    def values(self) -> dict[str, Any]: ...


RowT = TypeVar("RowT", bound=_ValuesRow)


class EntityRows(Generic[RowT]):
    """A sequence of per-entity answers, in request order, with one feature's values by name:
    shared by a read of one view and a lookup across views."""

    __slots__ = ()
    features: tuple[str, ...]
    rows: list[RowT]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[RowT]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> RowT:
        return self.rows[index]

    def column(self, feature: str) -> list[Any]:
        """One feature's values across the requested entities."""
        if feature not in self.features:
            raise KeyError(feature)
        return [row.values[feature] for row in self.rows]


@dataclass(frozen=True, slots=True)
class OnlineFeatures(EntityRows[OnlineRow]):
    """The answer to one online read: a row per requested entity, in request order."""

    view: str
    features: tuple[str, ...]
    rows: list[OnlineRow]
    now: datetime

    @property
    def statuses(self) -> list[FeatureStatus]:
        return [row.status for row in self.rows]


@dataclass(frozen=True, slots=True)
class MaterializeResult:
    """What one ``materialize`` (or ``write``) call did."""

    view: str
    version: str
    start: datetime | None
    """The previous watermark (exclusive); None when the view had never been materialized."""
    end: datetime | None
    """The new watermark (inclusive); None for a plain ``write``."""
    rows_read: int
    rows_in_window: int
    entities: int
    """Entities with a row in the window: the latest row of each was offered to the store."""
    written: int
    """Entities whose stored value was absent or older and was replaced."""
    skipped_null_keys: int = 0
    """Rows in the window without a complete join key, which no read could ever find."""


class StaleFeatures(UnavailableError):
    """A ``fail_closed`` view has stale or missing values for a requested entity.

    The server answers 503 with ``Retry-After: retry_after`` and this message.
    """

    def __init__(
        self, view: str, entities: Sequence[Any], age: float | None, *, ttl: float, missing: int, retry_after: int = 60
    ) -> None:
        self.view = view
        self.entities = list(entities)
        self.age = age
        self.retry_after = retry_after
        stale = len(self.entities) - missing
        parts = []
        if stale:
            parts.append(
                f"{stale} stale, the oldest {format_duration_s(age or 0.0)} old against a ttl of {format_duration_s(ttl)}"
            )
        if missing:
            parts.append(f"{missing} missing")
        super().__init__(
            f"feature view '{view}' has no fresh value for {len(self.entities)} requested "
            f"{'entity' if len(self.entities) == 1 else 'entities'} ({', '.join(parts)}) and its stale policy is "
            f"fail_closed; materialize or push fresh values, then retry in {retry_after} s"
        )


def format_duration_s(seconds: float) -> str:
    """Seconds in the largest unit that keeps them above one, for messages: ``90s``, ``2.5h``, ``31d``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{max(seconds, 0.0):.3g}s"


_COUNTER_FIELDS = ("fresh", "stale", "missing", "defaulted", "rejected")


class OnlineCounters:
    """Counts of values served per view since the store opened; thread-safe.

    ``fresh``, ``stale`` and ``missing`` count what reads found; ``defaulted`` counts values
    answered with the view's defaults and ``rejected`` values refused under ``fail_closed``.
    One value is one feature of one entity.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}

    def add(self, view: str, fresh: int, stale: int, missing: int, defaulted: int, rejected: int) -> None:
        with self._lock:
            counts = self._counts.get(view)
            if counts is None:
                counts = self._counts[view] = [0, 0, 0, 0, 0]
            counts[0] += fresh
            counts[1] += stale
            counts[2] += missing
            counts[3] += defaulted
            counts[4] += rejected

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{view: {"fresh": n, "stale": n, "missing": n, "defaulted": n, "rejected": n}}``."""
        with self._lock:
            return {view: dict(zip(_COUNTER_FIELDS, counts, strict=True)) for view, counts in self._counts.items()}

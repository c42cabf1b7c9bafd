"""Freshness: how old the newest event of each feature view is, against its SLA.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 2, tzinfo=UTC)
>>> late = ViewFreshness.judge("card_stats", latest=now - timedelta(hours=3), sla=timedelta(hours=1), now=now)
>>> late.status, str(late.lag)
('late', '3:00:00')
>>> FreshnessReport(views=[late], now=now).passed
False
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from lockgate.clock import format_duration
from lockgate.errors import CheckFailed

if TYPE_CHECKING:  # pyarrow.dataset takes seconds to import; the CLI must not pay for it at start
    import pyarrow.dataset as ds

__all__ = ["FreshnessFailed", "FreshnessReport", "FreshnessStatus", "ViewFreshness", "latest_event", "readable"]

FreshnessStatus = Literal["ok", "late", "empty", "no_sla"]
"""``ok``: the newest event is within the SLA; ``late``: it is older; ``empty``: the view has no
rows; ``no_sla``: the view declares no ``freshness_sla`` (reported, never failing)."""


class FreshnessFailed(CheckFailed):
    """A feature view's newest event is older than its freshness SLA (or it has none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ViewFreshness:
    """One view: its newest event, how far behind ``now`` that is, its SLA, and where the online
    store's materialization stands."""

    view: str
    latest_event: datetime | None
    lag: timedelta | None
    sla: timedelta | None
    status: FreshnessStatus
    materialized_through: datetime | None = None

    @classmethod
    def judge(
        cls,
        view: str,
        *,
        latest: datetime | None,
        sla: timedelta | None,
        now: datetime,
        materialized_through: datetime | None = None,
    ) -> ViewFreshness:
        lag = None if latest is None else max(now - _aware(latest), timedelta(0))
        status: FreshnessStatus
        if lag is None:
            status = "empty"
        elif sla is None:
            status = "no_sla"
        else:
            status = "ok" if lag <= sla else "late"
        return cls(
            view=view,
            latest_event=latest,
            lag=lag,
            sla=sla,
            status=status,
            materialized_through=materialized_through,
        )

    @property
    def passed(self) -> bool:
        return self.status in ("ok", "no_sla")

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "latest_event": self.latest_event.isoformat() if self.latest_event else None,
            "lag_seconds": self.lag.total_seconds() if self.lag is not None else None,
            "sla_seconds": self.sla.total_seconds() if self.sla is not None else None,
            "status": self.status,
            "materialized_through": self.materialized_through.isoformat() if self.materialized_through else None,
        }


@dataclass(frozen=True, slots=True)
class FreshnessReport:
    """Every view's freshness; ``passed`` (usable as a gate) when none is late or empty."""

    views: list[ViewFreshness]
    now: datetime

    @property
    def passed(self) -> bool:
        return all(v.passed for v in self.views)

    @property
    def failures(self) -> list[ViewFreshness]:
        return [v for v in self.views if not v.passed]

    def check(self) -> FreshnessReport:
        """Return the report when it passed; else raise :class:`FreshnessFailed` naming the views."""
        failed = self.failures
        if not failed:
            return self
        parts = []
        for v in failed:
            if v.status == "empty":
                parts.append(f"'{v.view}' has no rows")
            else:
                assert v.lag is not None
                assert v.sla is not None
                parts.append(f"'{v.view}' is {readable(v.lag)} behind (SLA {readable(v.sla)})")
        raise FreshnessFailed(
            f"{len(failed)} feature view{'s are' if len(failed) > 1 else ' is'} not fresh: {'; '.join(parts)}; "
            "check the upstream data and run: lockgate features materialize"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "passed": self.passed, "views": [v.to_dict() for v in self.views]}


def latest_event(dataset: ds.Dataset, column: str) -> datetime | None:
    """The newest value of ``column`` in ``dataset``, read batch by batch (one column only)."""
    newest: Any = None
    for batch in dataset.to_batches(columns=[column]):
        if not batch.num_rows:
            continue
        found = pc.max(batch.column(0))
        if found.is_valid and (newest is None or pc.greater(found, newest).as_py()):
            newest = found
    if newest is None:
        return None
    value = newest.cast(pa.timestamp("us", tz=newest.type.tz)).as_py()
    return _aware(value)


def _aware(value: datetime) -> datetime:
    """Naive times are UTC, as everywhere in lockgate."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def readable(value: timedelta) -> str:
    """A duration in its two largest units, as people read a lag: ``3h``, ``2d 4h``, ``12m 5s``.

    >>> readable(timedelta(days=332, hours=19, minutes=5)), readable(timedelta(seconds=7200))
    ('332d 19h', '2h')
    """
    seconds = round(value.total_seconds())
    if seconds < 60:
        return format_duration(timedelta(seconds=seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
        elif parts:
            parts.append("")
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if p)

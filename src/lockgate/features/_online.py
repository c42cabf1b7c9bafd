"""Online feature stores: the latest value of each feature per entity, with how old it is.

SQLite in the workspace by default, Redis by URL; both pass the same contract tests.

>>> import tempfile
>>> from datetime import UTC, datetime
>>> import pyarrow as pa
>>> from lockgate.features import Entity, FeatureView, ParquetSource
>>> view = FeatureView(
...     name="card_stats",
...     entities=[Entity("card", join_keys=["card_id"])],
...     ttl="1d",
...     source=ParquetSource("cards.parquet", event_time="ts"),
...     features={"spend": "float64"},
... )
>>> store = open_online_store(None, home=Path(tempfile.mkdtemp()))
>>> day = lambda d, h=0: datetime(2026, 1, d, h, tzinfo=UTC)
>>> rows = pa.table({"card_id": [1, 1], "ts": [day(1), day(2)], "spend": [3.0, 4.5]})
>>> store.materialize(view, rows, end=day(2)).written
1
>>> answer = store.read(view, [{"card_id": 1}, {"card_id": 2}], now=day(2, 6))
>>> [(row.values["spend"], row.age, row.status) for row in answer]
[(4.5, 21600.0, 'fresh'), (None, None, 'missing')]
>>> store.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from lockgate.errors import InvalidInputError, UnavailableError
from lockgate.features._definitions import FeatureView, StalePolicy
from lockgate.features._online_base import EntityKeys, Progress, Rows
from lockgate.features._online_results import (
    FeatureStatus,
    FeatureValue,
    MaterializeResult,
    OnlineCounters,
    OnlineFeatures,
    OnlineRow,
    StaleFeatures,
)
from lockgate.features._online_sqlite import SqliteOnlineStore

__all__ = [
    "EntityKeys",
    "FeatureStatus",
    "FeatureValue",
    "MaterializeResult",
    "OnlineCounters",
    "OnlineFeatures",
    "OnlineRow",
    "OnlineStore",
    "Progress",
    "Rows",
    "StaleFeatures",
    "open_online_store",
]

DEFAULT_FILE = "online.db"


class OnlineStore(Protocol):
    """What the feature service needs from an online store, whatever holds the values."""

    url: str
    counters: OnlineCounters
    """Fresh, stale, missing, defaulted and rejected values served per view."""
    retry_after: int
    """Seconds a client is told to wait when a ``fail_closed`` view refuses a read."""

    @property
    def backend(self) -> str:
        """``sqlite`` or ``redis``."""
        ...

    def read(
        self,
        view: FeatureView,
        entity_keys: EntityKeys,
        features: Sequence[str] | None = None,
        *,
        now: datetime | None = None,
        policy: StalePolicy | None = None,
    ) -> OnlineFeatures:
        """Each entity's stored values with event time, age and status; the view's ttl and
        stale policy (or ``policy``, for one consumer) decide what stale and missing values
        become. Raises :class:`StaleFeatures` under ``fail_closed``, ``InvalidInputError`` for
        an unknown feature or a row without the view's join keys."""
        ...

    def write(self, view: FeatureView, table: Rows) -> int:
        """Store each entity's latest row where newer than what is stored (the push path);
        returns how many entities changed. All or nothing on SQLite."""
        ...

    def materialize(
        self, view: FeatureView, rows: Rows, *, end: datetime, progress: Progress | None = None
    ) -> MaterializeResult:
        """Write the rows that arrived after the watermark and up to ``end``, then move the
        watermark to ``end``; running it again writes nothing."""
        ...

    def get_watermark(self, view: FeatureView) -> datetime | None:
        """Where the last materialization of this version of the view stopped."""
        ...

    def set_watermark(self, view: FeatureView, ts: datetime | None) -> None:
        """Move the watermark; None makes the next materialization start from the beginning."""
        ...

    def drop(self, view: FeatureView) -> None:
        """Delete the values and the watermark of this version of the view."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def __enter__(self) -> OnlineStore: ...

    def __exit__(self, *exc: object) -> None: ...


def open_online_store(url: str | None, *, home: Path) -> OnlineStore:
    """The online store at ``url``: None for ``<home>/online.db``, ``sqlite:///path`` (relative
    to ``home`` unless absolute, as ``sqlite:////abs/path``), or ``redis://host:port/db``
    (``?prefix=`` sets the key prefix, ``lockgate:`` by default).

    Raises ``UnavailableError`` when the store does not answer (within about 2 s for Redis).
    """
    if not url:
        return SqliteOnlineStore(path=Path(home) / DEFAULT_FILE)
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not url.startswith("sqlite:///") or url[len("sqlite:///") :] in ("", ":memory:"):
            raise InvalidInputError(
                f"the online store URL {url!r} names no file; write sqlite:///online.db (in the workspace) "
                "or sqlite:////absolute/path.db"
            )
        path = Path(url[len("sqlite:///") :])
        return SqliteOnlineStore(path=path if path.is_absolute() else Path(home) / path)
    if scheme in ("redis", "rediss", "unix"):
        try:
            from lockgate.features._online_redis import RedisOnlineStore
        except ImportError:
            raise UnavailableError(
                "a Redis online store needs the redis package; install it with: pip install 'redis>=5'"
            ) from None
        return RedisOnlineStore(url=url)
    raise InvalidInputError(
        f"online store URLs of the scheme {scheme!r} are not supported; use sqlite:///path or redis://host:port/db"
    )

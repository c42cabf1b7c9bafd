"""Keeping computed views' offline output in step with their source data.

A computed view (aggregations or SQL) is stored as its computed output. That output is only
right for the source data it was computed from, so lineage records the link (source
``path@fingerprint`` → output ``uri@fingerprint``, relation ``computed:VIEW``), and a view is
computed again when its output is missing or was computed from other source data. Training
sets therefore never read aggregates of yesterday's events, and materializing an unchanged
source computes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lockgate.config import Settings
from lockgate.entities import LineageEdge, NodeKind
from lockgate.features._definitions import FeatureView
from lockgate.lineage import LineageService, Node
from lockgate.store import Database

if TYPE_CHECKING:
    from lockgate.features._offline import OfflineStore

__all__ = ["ComputedViews", "fingerprint"]


def fingerprint(uri: str, *, s3_endpoint_url: str | None) -> str:
    """The content fingerprint of data at ``uri`` (a file or folder, local or S3)."""
    from lockgate.data._sources import Source

    return Source.parse(uri).fingerprint(settings=Settings.model_construct(s3_endpoint_url=s3_endpoint_url))


class ComputedViews:
    """Recomputes computed views whose stored output does not match their source."""

    def __init__(
        self, store: OfflineStore, db: Database, lineage: LineageService, *, s3_endpoint_url: str | None
    ) -> None:
        self._store = store
        self._db = db
        self._lineage = lineage
        self._s3 = s3_endpoint_url

    def stale(self, views: Sequence[FeatureView]) -> dict[str, str]:
        """The computed views among ``views`` whose output is missing or was computed from other
        source data, each with its source's fingerprint now."""
        found = {}
        for view in views:
            if not view.computed:
                continue
            source = fingerprint(view.source.path, s3_endpoint_url=self._s3)
            if not self._store.has_computed(view) or not self._computed_from(view, source):
                found[view.name] = source
        return found

    def refresh(
        self, views: Sequence[FeatureView], *, on_compute: Callable[[str], None] | None = None
    ) -> dict[str, int]:
        """Recompute the stale computed views: all in memory first (a failing query writes
        nothing), then each written and its lineage recorded. Returns rows per view written."""
        from lockgate.features._offline import compute_view

        stale = self.stale(views)
        tables = {}
        for view in views:
            if view.name in stale:
                if on_compute is not None:
                    on_compute(view.name)
                tables[view.name] = compute_view(view, s3_endpoint_url=self._s3)
        written = {}
        for view in views:
            if view.name not in tables:
                continue
            uri = self._store.write_computed(view, tables[view.name])
            output = fingerprint(uri, s3_endpoint_url=self._s3)
            with self._db.write() as conn:
                self._lineage.record(
                    conn,
                    [
                        LineageEdge(
                            src_kind=NodeKind.DATASET,
                            src_id=f"{view.source.path}@{stale[view.name]}",
                            relation=f"computed:{view.name}",
                            dst_kind=NodeKind.DATASET,
                            dst_id=f"{uri}@{output}",
                        )
                    ],
                )
            written[view.name] = tables[view.name].num_rows
        return written

    def _computed_from(self, view: FeatureView, source: str) -> bool:
        uri = self._store.computed_uri(view)
        output = Node(NodeKind.DATASET, f"{uri}@{fingerprint(uri, s3_endpoint_url=self._s3)}")
        graph = self._lineage.walk(output, direction="upstream", depth=1)
        wanted = (NodeKind.DATASET.value, f"{view.source.path}@{source}", f"computed:{view.name}")
        return any((e.src_kind, e.src_id, e.relation) == wanted for e in graph.edges)

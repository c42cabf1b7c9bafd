"""The offline engine of the feature store: where view rows live, how computed views are
computed, and point-in-time joins over them (DuckDB over Parquet, local or S3).

- :class:`OfflineStore` (``_offline_store``): the files, and :meth:`~OfflineStore.scan` of a
  view's rows checked against its definition; :meth:`~OfflineStore.lineage` for lineage.
- :func:`compute_view` (``_offline_compute``): aggregations and SQL views.
- :func:`point_in_time_join` and its column naming rule :func:`feature_columns` (``_pit_join``).
"""

from __future__ import annotations

from lockgate.features._offline_compute import compute_view
from lockgate.features._offline_store import OfflineStore, ViewLineage
from lockgate.features._pit_join import FeatureRequest, feature_columns, point_in_time_join

__all__ = [
    "FeatureRequest",
    "OfflineStore",
    "ViewLineage",
    "compute_view",
    "feature_columns",
    "point_in_time_join",
]

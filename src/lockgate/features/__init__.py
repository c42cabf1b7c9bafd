"""The feature store: one definition of each feature for training and serving, point-in-time
correct training sets, an online store that knows how old its values are."""

from __future__ import annotations

from lockgate.features._definitions import (
    Aggregation,
    Count,
    CountDistinct,
    Entity,
    FeatureService,
    FeatureView,
    Max,
    Mean,
    Min,
    OnDemandFeature,
    ParquetSource,
    StalePolicy,
    Sum,
    on_demand_feature,
    parse_feature_ref,
)

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
    "on_demand_feature",
    "parse_feature_ref",
]

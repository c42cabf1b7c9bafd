"""The feature store: one definition of each feature for training and serving, point-in-time
correct training sets, an online store that knows how old its values are."""

from __future__ import annotations

from lockgate.features._catalog import Catalog, OnDemandSpec, ResolvedFeature
from lockgate.features._checks import OnDemandExamplesCheck
from lockgate.features._consumers import Binding, FeatureConsumer, FeatureViewConsumers
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
from lockgate.features._freshness import FreshnessFailed, FreshnessReport, ViewFreshness
from lockgate.features._loader import load_definitions
from lockgate.features._lookup import OnlineEntity, OnlineResult
from lockgate.features._online import OnlineStore, open_online_store
from lockgate.features._online_results import (
    FeatureStatus,
    FeatureValue,
    MaterializeResult,
    OnlineCounters,
    OnlineFeatures,
    OnlineRow,
    StaleFeatures,
)
from lockgate.features._plan import ApplyPlan, BrokenConsumer, IncompatibleFeatureChange, PlannedChange
from lockgate.features._registry import FeatureRegistry, RegisteredDefinition
from lockgate.features._service import FeatureStore, MaterializeReport, PushResult
from lockgate.features._skew import FeatureSkew, PayloadProblem, SkewDetected, SkewReport

__all__ = [
    "Aggregation",
    "ApplyPlan",
    "Binding",
    "BrokenConsumer",
    "Catalog",
    "Count",
    "CountDistinct",
    "Entity",
    "FeatureConsumer",
    "FeatureRegistry",
    "FeatureService",
    "FeatureSkew",
    "FeatureStatus",
    "FeatureStore",
    "FeatureValue",
    "FeatureView",
    "FeatureViewConsumers",
    "FreshnessFailed",
    "FreshnessReport",
    "IncompatibleFeatureChange",
    "MaterializeReport",
    "MaterializeResult",
    "Max",
    "Mean",
    "Min",
    "OnDemandExamplesCheck",
    "OnDemandFeature",
    "OnDemandSpec",
    "OnlineCounters",
    "OnlineEntity",
    "OnlineFeatures",
    "OnlineResult",
    "OnlineRow",
    "OnlineStore",
    "ParquetSource",
    "PayloadProblem",
    "PlannedChange",
    "PushResult",
    "RegisteredDefinition",
    "ResolvedFeature",
    "SkewDetected",
    "SkewReport",
    "StaleFeatures",
    "StalePolicy",
    "Sum",
    "ViewFreshness",
    "load_definitions",
    "on_demand_feature",
    "open_online_store",
    "parse_feature_ref",
]

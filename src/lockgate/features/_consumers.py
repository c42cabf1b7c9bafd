"""Who reads a feature: model versions bound to feature services or registered with feature
references (an apply may not take their features away), and feature views that read a
contract's columns (a contract version may not take those away).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lockgate.clock import to_iso
from lockgate.data import Consumer
from lockgate.errors import InvalidInputError
from lockgate.features._catalog import Catalog, ResolvedFeature, feature_type_names
from lockgate.features._definitions import parse_feature_ref
from lockgate.features._plan import BrokenConsumer
from lockgate.store import ContractRepository, Database, FeatureRepository

__all__ = [
    "Binding",
    "FeatureConsumer",
    "FeatureViewConsumers",
    "binding",
    "breaking",
    "consumers_of_view",
]

# The contract a feature view's source is under, until FeatureView/ParquetSource carry it.


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """A model version bound to the feature service (version) it was trained with."""

    service: str
    service_version: str
    model: str
    version: int
    features: tuple[ResolvedFeature, ...]
    created_at: int
    created_by: str

    @property
    def model_ref(self) -> str:
        return f"models:/{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "service_version": self.service_version,
            "model": self.model_ref,
            "features": [f.ref for f in self.features],
            "created_at": to_iso(self.created_at),
            "created_by": self.created_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureConsumer:
    """A model version that reads features of a view: through a service it is bound to, or
    through the feature references it was registered with (``via`` is then empty)."""

    model: str
    version: int
    via: str
    features: tuple[str, ...]

    def __str__(self) -> str:
        return f"model {self.model} v{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": f"models:/{self.model}/{self.version}",
            "via": self.via or None,
            "features": list(self.features),
        }


def breaking(
    bindings: Iterable[Binding],
    model_refs: Iterable[tuple[str, int, list[str]]],
    current: Catalog,
    proposed: Catalog,
) -> list[BrokenConsumer]:
    """Every feature a model version reads that ``proposed`` removes or retypes, once per model and feature."""
    found: dict[tuple[str, str], BrokenConsumer] = {}
    for b in bindings:
        consumer = f"model {b.model} v{b.version}"
        service = proposed.services.get(b.service)
        listed = {f.ref for f in proposed.resolve(service.features)} if service is not None else set()
        for feature in b.features:
            why = _lost(feature, proposed)
            if why is None and service is not None and feature.ref not in listed:
                why = f"feature service '{b.service}' no longer lists it"
            if why is not None:
                found.setdefault(
                    (consumer, feature.ref),
                    _broken(
                        consumer,
                        f"feature service {b.service}",
                        feature,
                        why,
                        f"bound to feature service '{b.service}'",
                    ),
                )
    for model, version, refs in model_refs:
        consumer = f"model {model} v{version}"
        for feature in _referenced(refs, current):
            why = _lost(feature, proposed)
            if why is not None:
                found.setdefault(
                    (consumer, feature.ref),
                    _broken(consumer, "feature references", feature, why, "registered with feature references"),
                )
    return list(found.values())


def consumers_of_view(
    view: str,
    bindings: Iterable[Binding],
    model_refs: Iterable[tuple[str, int, list[str]]],
    current: Catalog,
) -> list[FeatureConsumer]:
    """The model versions that read features of ``view``, directly or through an on-demand feature's inputs."""
    found: list[FeatureConsumer] = []
    for b in bindings:
        refs = [f.ref for f in b.features if _reads(f, view, current)]
        if refs:
            found.append(FeatureConsumer(model=b.model, version=b.version, via=b.service, features=tuple(refs)))
    for model, version, model_refs_ in model_refs:
        refs = [f.ref for f in _referenced(model_refs_, current) if f.view == view]
        if refs:
            found.append(FeatureConsumer(model=model, version=version, via="", features=tuple(refs)))
    return found


class FeatureViewConsumers:
    """Feature views that read a contract's columns: plugged into the contract registry, so a
    contract version that drops or retypes a column a registered view reads is refused.

    The link is the view's source: ``ParquetSource(..., contract="transactions")`` (or
    ``"transactions@2"`` to judge against one version; otherwise the latest). A view reads its join keys, event and
    created time, and its aggregated or source feature columns; a ``sql=`` view every contract
    column its query names.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._features = FeatureRepository()
        self._contracts = ContractRepository()

    def consumers_of(self, contract: str) -> list[Consumer]:
        with self._db.read() as conn:
            views = self._features.heads(conn, "feature_view")
            latest = self._contracts.get(conn, contract)
            if latest is None:
                return []
            found = []
            for row in views:
                spec = row["spec"]
                name, _, pinned = str(spec["source"].get("contract") or "").partition("@")
                if name != contract:
                    continue
                version = int(pinned) if pinned.isdigit() else int(latest["version"])
                document = self._contracts.get(conn, contract, version)
                columns = (document or latest)["contract"].get("columns", {})
                found.append(
                    Consumer(
                        kind="feature view",
                        name=spec["name"],
                        contract_version=version,
                        columns=tuple(_source_columns(spec, columns)),
                    )
                )
            return found


def _lost(feature: ResolvedFeature, proposed: Catalog) -> str | None:
    """Why ``feature`` is no longer what a consumer read, or None when it still is."""
    if feature.view:
        view = proposed.views.get(feature.view)
        now = feature_type_names(view).get(feature.name) if view is not None else None
        if now is None:
            return f"feature view '{feature.view}' drops it"
        if now != feature.dtype:
            return f"feature view '{feature.view}' changes its type to {now}"
        return None
    od = proposed.on_demand.get(feature.name)
    if od is None:
        return f"on-demand feature '{feature.name}' is gone"
    if od.dtype != feature.dtype:
        return f"on-demand feature '{feature.name}' changes its type to {od.dtype}"
    return None


def _broken(consumer: str, via: str, feature: ResolvedFeature, why: str, how: str) -> BrokenConsumer:
    return BrokenConsumer(
        consumer=consumer,
        via=via,
        feature=feature.ref,
        message=(
            f"{consumer}, {how}, reads {feature.ref} ({feature.dtype}), and {why}; retire or retrain "
            f"{consumer} without it first, or define the change under a new name"
        ),
    )


def _referenced(refs: Sequence[str], current: Catalog) -> list[ResolvedFeature]:
    """The view features a model's registered feature references name, typed as registered now.

    References that do not parse, or name views lockgate does not know, are not the feature
    store's (models also record plain column names there).
    """
    found = []
    for ref in refs:
        if not isinstance(ref, str) or ":" not in ref:
            continue
        try:
            view_name, name = parse_feature_ref(ref)
        except InvalidInputError:
            continue
        view = current.views.get(view_name)
        if view is None:
            continue
        types = feature_type_names(view)
        for feature in types if name == "*" else [name] if name in types else []:
            found.append(ResolvedFeature(view_name, feature, types[feature]))
    return found


def _reads(feature: ResolvedFeature, view: str, current: Catalog) -> bool:
    if feature.view:
        return feature.view == view
    od = current.on_demand.get(feature.name)
    return od is not None and any(ref.partition(":")[0] == view for ref in od.feature_refs)


def _source_columns(spec: dict[str, Any], contract_columns: dict[str, Any]) -> list[str]:
    keys = [k for e in spec["entities"] for k in e["join_keys"]]
    source = spec["source"]
    times = [c for c in (source.get("event_time"), source.get("created_time")) if c]
    if spec.get("sql"):
        sql = str(spec["sql"])
        # Over-approximate: any contract column the query names may be read (a false match only
        # protects a column more).
        read = [c for c in contract_columns if re.search(rf"(?<!\w){re.escape(c)}(?!\w)", sql, re.IGNORECASE)]
    elif spec.get("aggregations"):
        read = [a["column"] for a in spec["aggregations"]]
    else:
        read = list(spec.get("features") or {})
    return list(dict.fromkeys([*keys, *times, *read]))


def binding(row: dict[str, Any]) -> Binding:
    return Binding(
        service=row["service"],
        service_version=row["service_version"],
        model=row["model_name"],
        version=int(row["model_version"]),
        features=tuple(ResolvedFeature.from_dict(f) for f in row["features"]),
        created_at=int(row["created_at"]),
        created_by=row["created_by"],
    )

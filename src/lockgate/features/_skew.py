"""Training-serving skew: the online store's values against the offline values for the same
entities (PSI and KS per feature), and an example serving payload against the definitions.

>>> import numpy as np
>>> same = np.arange(100.0)
>>> round(psi(same, same), 6), round(psi(same, same + 50), 2) > 0.2
(0.0, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from lockgate.errors import CheckFailed
from lockgate.features._catalog import Catalog
from lockgate.features._definitions import FeatureView
from lockgate.features._offline_schema import compatible, key_family, show_type

__all__ = [
    "FeatureSkew",
    "PayloadProblem",
    "SkewDetected",
    "SkewReport",
    "compare_feature",
    "psi",
    "validate_payload",
]

_BINS = 10
_EPS = 1e-6  # keeps an empty bin from making PSI infinite


class SkewDetected(CheckFailed):
    """Online values differ in distribution from the offline ones, or a payload does not fit the definitions."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeatureSkew:
    """One feature: how many entities were compared, how many values differ or are missing
    online, and the population stability index and Kolmogorov-Smirnov test between the two."""

    feature: str
    dtype: str
    entities: int
    mismatched: int
    missing_online: int
    psi: float
    ks_statistic: float | None
    ks_pvalue: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "type": self.dtype,
            "entities": self.entities,
            "mismatched": self.mismatched,
            "missing_online": self.missing_online,
            "psi": self.psi,
            "ks_statistic": self.ks_statistic,
            "ks_pvalue": self.ks_pvalue,
            "passed": self.passed,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PayloadProblem:
    """One way an example serving payload does not fit the definitions."""

    field: str
    severity: Literal["error", "warn"]
    message: str

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "severity": self.severity, "message": self.message}


@dataclass(frozen=True, slots=True, kw_only=True)
class SkewReport:
    """The skew of one view; ``passed`` (usable as a gate) when every feature is within the
    thresholds and the payload, if given, has no error."""

    view: str
    version: str
    entities: int
    features: list[FeatureSkew]
    payload: list[PayloadProblem] | None
    psi_max: float
    ks_alpha: float
    now: datetime

    @property
    def passed(self) -> bool:
        payload_ok = not any(p.severity == "error" for p in self.payload or [])
        return payload_ok and all(f.passed for f in self.features)

    def check(self) -> SkewReport:
        """Return the report when it passed; else raise :class:`SkewDetected` saying why."""
        if self.passed:
            return self
        parts = [
            f"'{f.feature}' (PSI {f.psi:.3f}"
            + (f", KS p={f.ks_pvalue:.3g}" if f.ks_pvalue is not None else "")
            + f", {f.mismatched} of {f.entities} values differ)"
            for f in self.features
            if not f.passed
        ]
        parts += [p.message for p in self.payload or [] if p.severity == "error"]
        raise SkewDetected(
            f"feature view '{self.view}' fails the skew check: {'; '.join(parts)}; "
            f"materialize it again (lockgate features materialize) or fix the serving payload"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "version": self.version,
            "now": self.now.isoformat(),
            "entities": self.entities,
            "passed": self.passed,
            "thresholds": {"psi_max": self.psi_max, "ks_alpha": self.ks_alpha},
            "features": [f.to_dict() for f in self.features],
            "payload": None if self.payload is None else [p.to_dict() for p in self.payload],
        }


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any]) -> float:
    """Population stability index of ``actual`` against ``expected`` (numbers), over the deciles of ``expected``."""
    if not len(expected) or not len(actual):
        return 0.0 if len(expected) == len(actual) else float("inf")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, _BINS + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1) / len(expected)
    q = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1) / len(actual)
    return _index(p, q)


def _index(p: np.ndarray[Any, Any], q: np.ndarray[Any, Any]) -> float:
    p = np.clip(p, _EPS, None)
    q = np.clip(q, _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def compare_feature(
    name: str,
    dtype: pa.DataType,
    offline: pa.Array,
    online: pa.Array,
    *,
    psi_max: float,
    ks_alpha: float,
    type_name: str | None = None,
) -> FeatureSkew:
    """Compare one feature's offline and online values, entity by entity and as distributions.

    Missing values count as a category of their own, so an online store that lacks values
    shows as skew. Numbers (and times) get PSI over deciles and a KS test; other values PSI
    over their categories.
    """
    n = len(offline)
    off_missing = np.asarray(offline.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    on_missing = np.asarray(online.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    both = ~off_missing & ~on_missing
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_timestamp(dtype)
    if numeric:
        off = _numbers(offline)
        on = _numbers(online)
        differ = both & ~np.isclose(off, on, rtol=1e-9, atol=0.0, equal_nan=True)
    else:
        off_values = np.array(offline.to_pylist(), dtype=object)
        on_values = np.array(online.to_pylist(), dtype=object)
        differ = both & (off_values != on_values)
    mismatched = int(differ.sum() + (off_missing != on_missing).sum())
    off_share = np.array([off_missing.mean() if n else 0.0])
    on_share = np.array([on_missing.mean() if n else 0.0])
    ks_stat = ks_p = None
    if numeric:
        off_present, on_present = off[~off_missing], on[~on_missing]
        value_psi = _split_psi(off_present, on_present, n)
        if len(off_present) and len(on_present):
            from scipy.stats import ks_2samp  # scipy costs a second to import: only when asked

            if np.array_equal(np.sort(off_present), np.sort(on_present)):
                ks_stat, ks_p = 0.0, 1.0  # identical samples; scipy would warn on some of them
            else:
                test = ks_2samp(off_present, on_present)
                ks_stat, ks_p = float(test.statistic), float(test.pvalue)
        index = value_psi + _index(off_share, on_share) if n else 0.0
    else:
        index = _category_psi(offline, online) if n else 0.0
    passed = index <= psi_max and (ks_p is None or ks_p >= ks_alpha)
    return FeatureSkew(
        feature=name,
        dtype=type_name or show_type(dtype),
        entities=n,
        mismatched=mismatched,
        missing_online=int(on_missing.sum()),
        psi=round(index, 6),
        ks_statistic=ks_stat,
        ks_pvalue=ks_p,
        passed=passed,
    )


def _numbers(values: pa.Array) -> np.ndarray[Any, Any]:
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.int64())
    return np.asarray(values.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=float)


def _split_psi(off: np.ndarray[Any, Any], on: np.ndarray[Any, Any], n: int) -> float:
    """PSI over deciles, weighted by the share of present values (the missing share is its own bin)."""
    if not len(off) and not len(on):
        return 0.0
    if not len(off) or not len(on):
        return 0.0  # all the difference is in the missing bin
    edges = np.unique(np.quantile(off, np.linspace(0, 1, _BINS + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, off, side="right"), minlength=len(edges) + 1) / n
    q = np.bincount(np.searchsorted(edges, on, side="right"), minlength=len(edges) + 1) / n
    return _index(p, q)


def _category_psi(offline: pa.Array, online: pa.Array) -> float:
    off = [repr(v) for v in offline.to_pylist()]
    on = [repr(v) for v in online.to_pylist()]
    categories = sorted(set(off) | set(on))
    index = {c: i for i, c in enumerate(categories)}
    p = np.bincount([index[v] for v in off], minlength=len(categories)) / len(off)
    q = np.bincount([index[v] for v in on], minlength=len(categories)) / len(on)
    return _index(p, q)


# -- payloads ------------------------------------------------------------------------------------


def validate_payload(
    view: FeatureView,
    payload: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    catalog: Catalog,
    *,
    key_types: Mapping[str, pa.DataType] | None = None,
) -> list[PayloadProblem]:
    """What in an example serving payload (a row, or rows, of fields) does not fit the view.

    Every join key must be there and non-null (and of the type the view's data keys have);
    a feature given in the payload must hold values of its declared type; the request fields
    of on-demand features reading the view must be there. Anything else is a warning: serving
    ignores it.
    """
    rows = [payload] if isinstance(payload, Mapping) else list(payload) if isinstance(payload, (list, tuple)) else []
    problems: list[PayloadProblem] = []
    if not rows or not all(isinstance(r, Mapping) for r in rows):
        return [PayloadProblem(field="", severity="error", message="the payload must be a row of fields, or rows")]
    features = view.feature_types
    readers = [
        od for od in catalog.on_demand.values() if any(ref.partition(":")[0] == view.name for ref in od.feature_refs)
    ]
    request_fields = {f: od.name for od in readers for f in od.request_fields}
    names = list(dict.fromkeys(k for r in rows for k in r))
    for key in view.join_keys:
        if any(key not in r for r in rows):
            problems.append(_error(key, f"the payload lacks join key '{key}' of feature view '{view.name}'"))
            continue
        values = [r[key] for r in rows]
        if any(v is None for v in values):
            problems.append(_error(key, f"join key '{key}' is null in the payload; every lookup needs it"))
            continue
        found = _type_of(values)
        wanted = (key_types or {}).get(key)
        if found is not None and wanted is not None and key_family(found) != key_family(wanted):
            problems.append(
                _error(
                    key,
                    f"join key '{key}' is {show_type(found)} in the payload but {show_type(wanted)} in the "
                    f"data of feature view '{view.name}'; send it as {show_type(wanted)}",
                )
            )
    for field, od_name in request_fields.items():
        if any(field not in r for r in rows):
            problems.append(
                _error(
                    field, f"on-demand feature '{od_name}' needs the request field '{field}', which the payload lacks"
                )
            )
    for name in names:
        if name in view.join_keys or name in request_fields:
            continue
        if name in features:
            found = _type_of([r.get(name) for r in rows])
            if found is not None and not compatible(found, features[name]):
                problems.append(
                    _error(
                        name,
                        f"feature '{name}' is {show_type(found)} in the payload, but feature view '{view.name}' "
                        f"declares {show_type(features[name])}",
                    )
                )
            continue
        problems.append(
            PayloadProblem(
                field=name,
                severity="warn",
                message=f"'{name}' is not a join key, feature or request field of feature view '{view.name}'; "
                "serving ignores it",
            )
        )
    return problems


def _type_of(values: list[Any]) -> pa.DataType | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    try:
        return pa.array(present).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None  # values of mixed types: nothing to compare one type with


def _error(field: str, message: str) -> PayloadProblem:
    return PayloadProblem(field=field, severity="error", message=message)

"""How the validator writes numbers and values into its one-sentence failure messages.

>>> rows(1204), share(0.01204), value("zzz"), bound(50000.0)
('1,204 rows', '1.2%', "'zzz'", '50000')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

__all__ = ["age", "bound", "examples", "jsonable", "rows", "share", "value", "verb"]


def rows(n: int) -> str:
    """``'1 row'``, ``'1,204 rows'``."""
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def verb(n: int, singular: str, plural: str) -> str:
    """The verb form that agrees with ``n`` rows: ``verb(1, "repeats", "repeat")``."""
    return singular if n == 1 else plural


def share(part: float) -> str:
    """A share as a percentage with enough digits to tell 1 row in a million from none."""
    pct = part * 100
    if pct == 0:
        return "0%"
    if pct >= 10:
        return f"{pct:.0f}%" if pct == round(pct) else f"{pct:.1f}%"
    if pct >= 1:
        return f"{pct:.1f}%"
    if pct < 0.0001:
        return "<0.0001%"
    if pct >= 0.001:
        return f"{pct:.2g}%"
    return f"{pct:.4f}".rstrip("0") + "%"


def bound(x: float) -> str:
    """A rule's number as the user wrote it: ``50000``, not ``50000.0``."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x) if isinstance(x, float) else str(x)


def value(v: Any) -> str:
    """An example value: strings quoted, numbers bare, times in ISO form, rows as ``{a=1}``."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return repr(v if len(v) <= 60 else v[:57] + "...")
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, bytes):
        return repr(v[:40])
    return str(v)


def examples(values: Sequence[Any], *, prefix: str = ", e.g. ") -> str:
    """``', e.g. 61200.5, 99000.0'``, or nothing when there are no examples."""
    return prefix + ", ".join(value(v) for v in values) if values else ""


def age(delta: timedelta) -> str:
    """A duration the way people say it: ``'3h 12m'``, ``'2d 4h'``, ``'45s'``."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return f"{seconds}s"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] if days else []
    if hours:
        parts.append(f"{hours}h")
    if minutes and not days:
        parts.append(f"{minutes}m")
    return " ".join(parts) or "0m"


def jsonable(v: Any) -> Any:
    """A value JSON can carry: times as ISO text, NaN and infinities as null, bytes as text."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, (datetime, date)):
        return v.isoformat()
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="backslashreplace")
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return jsonable(v.item())
    return str(v)

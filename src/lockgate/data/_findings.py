"""What a check found: the public :class:`Failure`, and the rows behind it while validation runs."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from lockgate.data._checks import Hits
from lockgate.data._contract import Severity
from lockgate.data._wording import jsonable

__all__ = ["EXAMPLES", "Failure", "Finding", "example_values"]

EXAMPLES = 5


@dataclass(frozen=True, kw_only=True)
class Failure:
    """One rule the data broke, with how many rows, which share, and a few example values.

    ``check`` names the rule: ``missing_column``, ``type``, ``extra_column``, ``not_null``,
    ``max_null_rate``, ``min``, ``max``, ``allowed``, ``regex``, ``unique``, ``primary_key``,
    ``duplicate_rows``, ``min_rows``, ``new_categories``, ``distinct_change``,
    ``row_count_change``, ``freshness``, ``label_availability`` or ``custom:<name>``.

    ``share`` is ``rows`` over the rows the check looked at: the whole table, except for
    ``label_availability`` (the rows older than the label delay). Schema and table-wide
    failures count every row. ``quarantined`` is true when ``on_error: quarantine`` moved the
    failing rows out of the data that passes, so the failure no longer fails the report.
    """

    check: str
    column: str | None
    severity: Severity
    rows: int
    share: float
    examples: tuple[Any, ...]
    message: str
    quarantined: bool = False

    def to_json(self) -> dict[str, Any]:
        """The failure as JSON-able data, keys in a fixed order."""
        return {
            "check": self.check,
            "column": self.column,
            "severity": self.severity,
            "rows": self.rows,
            "share": self.share,
            "examples": [jsonable(v) for v in self.examples],
            "message": self.message,
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A failure and, for row-level rules, the rows that broke it (for quarantine)."""

    failure: Failure
    hits: Hits | None = None

    def quarantine(self) -> Finding:
        message = self.failure.message.rstrip(".") + "; moved to quarantine."
        return Finding(replace(self.failure, quarantined=True, message=message), self.hits)


def example_values(
    col: pa.ChunkedArray | pa.Table, mask: np.ndarray[Any, Any], limit: int = EXAMPLES
) -> tuple[Any, ...]:
    """Up to ``limit`` distinct values (or rows, for a table) among the flagged rows, in row order."""
    picked = np.flatnonzero(mask)[: limit * 16]
    values = col.take(pa.array(picked)).to_pylist()
    out: list[Any] = []
    for v in values:
        if v not in out:
            out.append(v)
            if len(out) == limit:
                break
    return tuple(out)

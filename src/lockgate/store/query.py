"""The shape of a run search, as the store understands it.

``tracking.search`` parses the user's filter text into these; the SQL store turns them into
one query. Keeping the AST here lets both layers share it without importing upward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ATTRIBUTES", "Clause", "Field", "FieldKind", "Op", "OrderBy"]

FieldKind = Literal["metric", "param", "tag", "attribute"]
Op = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"]

# attribute name (as users write it) -> runs column
ATTRIBUTES: dict[str, str] = {
    "id": "id",
    "run_id": "id",
    "name": "name",
    "run_name": "name",
    "status": "status",
    "actor": "actor",
    "user": "actor",
    "start_time": "start_time",
    "end_time": "end_time",
    "parent_id": "parent_id",
    "git_commit": "git_commit",
    "git_branch": "git_branch",
}


@dataclass(frozen=True, slots=True)
class Field:
    kind: FieldKind
    key: str


@dataclass(frozen=True, slots=True)
class Clause:
    field: Field
    op: Op
    value: float | str | tuple[float | str, ...]


@dataclass(frozen=True, slots=True)
class OrderBy:
    field: Field
    descending: bool = False

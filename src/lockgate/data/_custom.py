"""Custom checks: a SQL boolean expression over each row (run by DuckDB over the Arrow data), or a
Python function registered by name that looks at a whole batch at once.

Both follow SQL's ``CHECK`` rule: a row fails only when the result is false; a null result
(``refund <= amount`` with no refund) passes, as it would in a database constraint.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from lockgate.data._checks import Hits, Mask
from lockgate.data._contract import CustomCheck
from lockgate.errors import InvalidInputError, UserCodeError

__all__ = ["BatchCheck", "batch_check_names", "custom_hits", "mentioned_columns", "register_batch_check"]

BatchCheck = Callable[[pa.Table], Any]
F = TypeVar("F", bound=BatchCheck)

_REGISTRY: dict[str, BatchCheck] = {}
_LOCAL = threading.local()
_VIEW = "__lockgate_rows"


def register_batch_check(name: str) -> Callable[[F], F]:
    """Register a function as the Python check ``name`` that contracts can refer to.

    The function receives the rows as a ``pyarrow.Table`` and returns one boolean per row,
    True where the row passes (an Arrow or numpy boolean array, or a list). Registering a name
    again replaces the function, so re-running a notebook cell works.

    >>> import pyarrow.compute as pc
    >>> @register_batch_check("refund_within_amount")
    ... def refund_within_amount(batch):
    ...     return pc.less_equal(batch["refund"], batch["amount"])
    >>> "refund_within_amount" in batch_check_names()
    True
    """
    if not isinstance(name, str) or not name:
        raise InvalidInputError("a batch check needs a non-empty name: @register_batch_check('my_check')")

    def decorate(fn: F) -> F:
        _REGISTRY[name] = fn
        return fn

    return decorate


def batch_check_names() -> list[str]:
    """The names of the registered Python checks."""
    return sorted(_REGISTRY)


def custom_hits(check: CustomCheck, table: pa.Table) -> Hits | None:
    """The rows that fail ``check``."""
    passes = _sql(check, table) if check.sql is not None else _python(check, table)
    failing: Mask = ~passes
    count = int(np.count_nonzero(failing))
    return Hits(count, failing) if count else None


def mentioned_columns(check: CustomCheck, columns: list[str]) -> list[str]:
    """The table's columns a SQL check's text names (to show them in examples)."""
    if check.sql is None:
        return []
    words = set(re.findall(r'"([^"]+)"|([A-Za-z_][A-Za-z0-9_]*)', check.sql))
    named = {a or b for a, b in words}
    return [c for c in columns if c in named]


def _to_mask(result: Any, n: int, what: str) -> Mask:
    """A boolean result as a numpy mask where null counts as passing."""
    if isinstance(result, pa.ChunkedArray):
        result = result.combine_chunks() if result.num_chunks != 1 else result.chunk(0)
    if isinstance(result, pa.Array):
        if not pa.types.is_boolean(result.type):
            raise TypeError(f"{what} gave {result.type} values, not booleans")
        mask: Mask = result.fill_null(True).to_numpy(zero_copy_only=False)
    else:
        array = np.asarray(result)
        if array.dtype != np.bool_:
            raise TypeError(f"{what} gave {array.dtype} values, not booleans")
        mask = array.reshape(-1)
    if len(mask) != n:
        raise TypeError(f"{what} gave {len(mask)} values for {n} rows")
    return mask


def _connection() -> Any:
    con = getattr(_LOCAL, "duckdb", None)
    if con is None:
        import duckdb

        con = duckdb.connect()
        _LOCAL.duckdb = con
    return con


def _sql(check: CustomCheck, table: pa.Table) -> Mask:
    import duckdb

    con = _connection()
    con.register(_VIEW, table)
    try:
        result = con.sql(f"SELECT ({check.sql}) AS ok FROM {_VIEW}").to_arrow_table()
    except duckdb.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        raise InvalidInputError(
            f"custom check {check.name!r}: the SQL expression {check.sql!r} does not run ({reason}); fix it in the contract"
        ) from None
    finally:
        con.unregister(_VIEW)
    try:
        return _to_mask(result.column(0), table.num_rows, "the expression")
    except TypeError as exc:
        raise InvalidInputError(
            f"custom check {check.name!r}: {exc}; write a boolean expression such as 'refund <= amount'"
        ) from None


def _python(check: CustomCheck, table: pa.Table) -> Mask:
    assert check.python is not None
    fn = _REGISTRY.get(check.python)
    if fn is None:
        known = ", ".join(batch_check_names()) or "none registered"
        raise InvalidInputError(
            f"custom check {check.name!r} names the Python check {check.python!r}, which is not registered "
            f"(registered: {known}); decorate it with @register_batch_check({check.python!r}) and import it first"
        )
    try:
        result = fn(table)
    except Exception as exc:
        raise UserCodeError(
            f"Python check {check.python!r} (custom check {check.name!r}) raised {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return _to_mask(result, table.num_rows, f"Python check {check.python!r}")
    except TypeError as exc:
        raise UserCodeError(f"{exc}; return one boolean per row, True where the row passes") from None

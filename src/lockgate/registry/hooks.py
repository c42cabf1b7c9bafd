"""Extension points of the model registry.

Every alias move goes through one code path, which calls each registered hook before the
move is written, outside the write transaction (a hook may read the workspace or log runs).
A hook refuses a move by raising a :class:`~lockgate.errors.LockgateError`; any other
exception is reported as the hook failing (promotion gates will plug in here).

>>> from lockgate.errors import PermissionDenied
>>> from lockgate.registry.hooks import AliasMove
>>> class OnlyFromStaging:
...     def before_alias_move(self, move: AliasMove) -> None:
...         if move.alias == "champion" and move.from_version is None:
...             raise PermissionDenied("champion must be set by promotion; move staging first")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["AliasHook", "AliasMove"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AliasMove:
    """A proposed move of ``name@alias`` from one version to another (None: newly set / removed)."""

    name: str
    alias: str
    from_version: int | None
    to_version: int | None
    actor: str


@runtime_checkable
class AliasHook(Protocol):
    def before_alias_move(self, move: AliasMove) -> None:
        """Raise a :class:`~lockgate.errors.LockgateError` to refuse the move."""

"""Per-invocation state shared by the commands: global options and the workspace, opened
lazily so ``--help`` never touches a database."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from lockgate.cli._output import Output
from lockgate.workspace import Workspace

__all__ = ["State", "state"]


@dataclass
class State:
    home: Path | None = None
    output: Output = field(default_factory=Output)
    _ws: Workspace | None = None

    def workspace(self) -> Workspace:
        if self._ws is None:
            self._ws = Workspace.open(self.home)
        return self._ws


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    if not isinstance(obj, State):
        obj = State()
        ctx.find_root().obj = obj
    return obj
